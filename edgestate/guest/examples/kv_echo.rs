//! Key-value echo over document "kv". Input "key=value" stores value under key;
//! input "key" alone reads it. Either way the output is the value read back
//! (read-your-own-writes: a value set here is visible before it commits).
#![no_std]
use edgestate::{Doc, Error, OrStatus, Result};

fn run() -> Result<()> {
    let mut in_buf = [0u8; 4096];
    let input: &[u8] = edgestate::input(&mut in_buf).or_status(1)?;
    let split = input.iter().position(|&c| c == b'=').unwrap_or(input.len());
    let (key, rest) = input.split_at(split);
    let doc = Doc::open("kv").or_status(2)?;
    if let Some((_, value)) = rest.split_first() {
        doc.set(key, value).or_status(3)?;
    }
    let mut val_buf = [0u8; 4096];
    match doc.get(key, &mut val_buf).or_status(4)? {
        Some(value) => edgestate::output(value),
        None => return Err(Error::Status(5)),
    }
    Ok(())
}

edgestate::entry!(run);
