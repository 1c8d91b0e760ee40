//! Session store over document "sessions". Input: a session id. Per request it
//! reads the session's data and preferences, counts the hit, stamps
//! last-seen and appends a marker to the data (kept to 256 bytes); the output
//! is "hits=N bytes=M".
#![no_std]
use edgestate::{Doc, Error, Line, OrStatus, Result};

/// `id` + `suffix` as a key (ids are at most 64 bytes, so nothing is cut).
fn key(id: &[u8], suffix: &[u8]) -> Line<96> {
    let mut k = Line::new();
    k.push(id).push(suffix);
    k
}

// Static buffers (see kv_echo.rs): zeroed for free in a fresh instance.
static mut DATA: [u8; 300] = [0; 300];
static mut PREFS: [u8; 256] = [0; 256];

fn run() -> Result<()> {
    let mut id_buf = [0u8; 64];
    let id: &[u8] = edgestate::input(&mut id_buf).or_status(1)?;
    if id.is_empty() {
        return Err(Error::Status(1));
    }
    let doc = Doc::open("sessions").or_status(2)?;

    let (data_buf, prefs_buf) = unsafe { (&mut DATA, &mut PREFS) };
    let mut data_len = match doc.get(key(id, b":data"), data_buf).or_status(3)? {
        Some(d) => d.len(),
        None => 0,
    };
    doc.get(key(id, b":prefs"), prefs_buf).or_status(3)?;

    let hits = doc.incr(key(id, b":hits"), 1).or_status(4)?;
    let now = edgestate::now_ms();
    doc.set(key(id, b":last_seen"), &now.to_le_bytes()).or_status(5)?;
    if data_len >= 256 {
        data_len = 0;
    }
    data_buf[data_len] = b'.';
    data_len += 1;
    doc.set(key(id, b":data"), &data_buf[..data_len]).or_status(5)?;

    let mut out = Line::<64>::new();
    out.push(b"hits=").push(edgestate::format_i64(hits, &mut [0u8; 20]));
    out.push(b" bytes=").push(edgestate::format_i64(data_len as i64, &mut [0u8; 20]));
    edgestate::output(out.as_bytes());
    Ok(())
}

edgestate::entry!(run);
