//! Counter: adds 1 to the counter named by the input (default "visits") in
//! document "counters" and outputs its new total in decimal.
#![no_std]
use edgestate::{Doc, OrStatus, Result};

fn run() -> Result<()> {
    let mut key_buf = [0u8; 128];
    let mut key: &[u8] = edgestate::input(&mut key_buf).or_status(1)?;
    if key.is_empty() {
        key = b"visits";
    }
    let doc = Doc::open("counters").or_status(2)?;
    let total = doc.incr(key, 1).or_status(3)?;
    edgestate::output(edgestate::format_i64(total, &mut [0u8; 20]));
    Ok(())
}

edgestate::entry!(run);
