"""The SDK calls the examples do not use: scan pages (with their cursors) and
the length-or-retry read, in Rust and AssemblyScript, against a real store of
150 keys (three pages of 64) and a value larger than the first buffer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgestate.devkit import Publisher
from edgestate.guest.toolchains import Asc, Rustc, build_as, build_rust
from edgestate.runtime import Runtime, RuntimeConfig, TrustPolicy, load_private_key, sign_module
from edgestate.store import Store

pytestmark = pytest.mark.timeout(300)

RUST = """#![no_std]
use edgestate::{Doc, Error, Line, OrStatus, Page, Result};

static mut PAGE: [u8; 2048] = [0; 2048];
static mut CURSOR: [u8; 256] = [0; 256];
static mut SMALL: [u8; 8] = [0; 8];
static mut BIG: [u8; 1024] = [0; 1024];

fn run() -> Result<()> {
    let doc = Doc::open("app").or_status(2)?;
    let (page_buf, cursor_buf) = unsafe { (&mut PAGE, &mut CURSOR) };
    let (mut cursor_len, mut count, mut pages) = (0usize, 0i64, 0i64);
    let (mut first, mut last) = (Line::<64>::new(), Line::<64>::new());
    loop {
        let page = doc.scan("k:", &cursor_buf[..cursor_len], page_buf)?;
        let mut p = Page::parse(page)?;
        pages += 1;
        while let Some(k) = p.next_key()? {
            if count == 0 {
                first.push(k.as_bytes());
            }
            last = Line::new();
            last.push(k.as_bytes());
            count += 1;
        }
        match p.cursor()? {
            Some(c) if c.len() <= cursor_buf.len() => {
                cursor_buf[..c.len()].copy_from_slice(c);
                cursor_len = c.len();
            }
            Some(_) => return Err(Error::Status(7)),
            None => break,
        }
    }
    let needed = match doc.get("big", unsafe { &mut SMALL }) {
        Err(Error::BufferTooSmall { needed }) => needed,
        _ => return Err(Error::Status(8)),
    };
    let big = doc.get("big", unsafe { &mut BIG[..needed] })?.ok_or(Error::Status(9))?;
    let mut out = Line::<160>::new();
    out.push(edgestate::format_i64(count, &mut [0; 20])).push(b" ");
    out.push(edgestate::format_i64(pages, &mut [0; 20])).push(b" ");
    out.push(first.as_bytes()).push(b" ").push(last.as_bytes()).push(b" ");
    out.push(edgestate::format_i64(big.len() as i64, &mut [0; 20]));
    edgestate::output(out.as_bytes());
    Ok(())
}

edgestate::entry!(run);
"""

ASSEMBLYSCRIPT = """import { Doc, outputString } from "edgestate-sdk";

export function handle(): i32 {
  const doc = Doc.open("app");
  if (doc == null) return 2;
  let cursor: Uint8Array | null = null;
  let count = 0, pages = 0;
  let first = "", last = "";
  while (true) {
    const page = doc.scan("k:", cursor);
    if (page == null) return 3;
    pages++;
    for (let i = 0; i < page.keys.length; i++) {
      if (count == 0) first = page.keys[i];
      last = page.keys[i];
      count++;
    }
    cursor = page.cursor;
    if (cursor == null) break;
  }
  const big = doc.get("big"); // 300 bytes: over the first 256-byte buffer
  if (big == null) return 4;
  outputString(`${count} ${pages} ${first} ${last} ${big.length}`);
  return 0;
}
"""


def _run(wasm: bytes, publisher: Publisher, data: Path) -> bytes:
    manifest = json.dumps(
        {
            "name": "scanner",
            "version": "1.0.0",
            "documents": {"read": ["app"], "write": []},
            "limits": {"fuel": 5_000_000, "memory_pages": 16, "max_output_bytes": 256},
        }
    ).encode()
    with Store.open(data) as store:
        store.create_document("app")
        for i in range(150):
            store.set("app", f"k:{i:03d}", b"v")
        store.set("app", "big", b"x" * 300)
        store.set("app", "l:outside", b"not under the prefix")
        policy = TrustPolicy.load(publisher.policy_path)
        with Runtime(store, policy, RuntimeConfig()) as runtime:
            signature = sign_module(wasm, manifest, load_private_key(publisher.key_path))
            runtime.load(wasm, manifest, signature)
            return runtime.invoke("scanner").output


def test_rust_scans_every_page_and_retries_a_read(
    rustc: Rustc, build_dir: Path, publisher: Publisher, tmp_path: Path
) -> None:
    source = tmp_path / "scanner.rs"
    source.write_text(RUST)
    wasm = build_rust(source, build_dir, rustc=rustc).read_bytes()
    assert _run(wasm, publisher, tmp_path / "data") == b"150 3 k:000 k:149 300"


def test_assemblyscript_scans_every_page_and_retries_a_read(
    asc: Asc, build_dir: Path, publisher: Publisher, tmp_path: Path
) -> None:
    source = tmp_path / "scanner.ts"
    source.write_text(ASSEMBLYSCRIPT)
    wasm = build_as(source, build_dir, asc=asc).read_bytes()
    assert _run(wasm, publisher, tmp_path / "data") == b"150 3 k:000 k:149 300"
