//! Key-value echo over document "kv". Input "key=value" stores value under key;
//! input "key" alone reads it. Either way the output is the value read back
//! (read-your-own-writes: a value set here is visible before it commits).
#![no_std]
use edgestate::{Doc, Error, OrStatus, Result};

// Static buffers, as in the C example: a fresh instance per request starts them
// zeroed for free, where a 4 KiB array on the stack is zeroed by code (about
// 10,000 fuel each). Sound here: an instance runs one call, on one thread.
static mut IN: [u8; 4096] = [0; 4096];
static mut VALUE: [u8; 4096] = [0; 4096];

fn run() -> Result<()> {
    let (in_buf, val_buf) = unsafe { (&mut IN, &mut VALUE) };
    let input: &[u8] = edgestate::input(in_buf).or_status(1)?;
    let split = input.iter().position(|&c| c == b'=').unwrap_or(input.len());
    let (key, rest) = input.split_at(split);
    let doc = Doc::open("kv").or_status(2)?;
    if let Some((_, value)) = rest.split_first() {
        doc.set(key, value).or_status(3)?;
    }
    match doc.get(key, val_buf).or_status(4)? {
        Some(value) => edgestate::output(value),
        None => return Err(Error::Status(5)),
    }
    Ok(())
}

edgestate::entry!(run);
