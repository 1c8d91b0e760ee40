"""The entry helpers give the same statuses in every SDK (an ABI error is 100
minus its code), Zig's es.join builds keys, and the Rust SDK's `alloc` feature
(std linked) reads into Vecs and logs a formatted panic message."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgestate.devkit import Publisher
from edgestate.errors import GuestStatusError, GuestTrapError
from edgestate.guest import build_zig
from edgestate.guest.toolchains import Rustc, build_rust
from edgestate.runtime import Runtime, RuntimeConfig, TrustPolicy, load_private_key, sign_module
from edgestate.store import Store

pytestmark = pytest.mark.timeout(300)

ZIG = """const es = @import("edgestate.zig");

fn run() es.Error!void {
    var in_buf: [64]u8 = undefined;
    const id = try es.input(&in_buf);
    const doc = try es.Doc.open("app");
    var k: [96]u8 = undefined;
    _ = try doc.incr(es.join(&k, &.{ id, ":seen" }), 1);
    var v: [8]u8 = undefined;
    // An absent key is null, not an error.
    _ = try doc.get(es.join(&k, &.{ id, ":absent" }), &v);
    if (id.len == 4) _ = try es.Doc.open("nope");
}

export fn handle() i32 {
    return es.run(run);
}
"""

RUST = """#![no_std]
extern crate alloc;
use edgestate::{Doc, Result};

fn run() -> Result<()> {
    let input = edgestate::input_vec();
    let doc = Doc::open("app")?;
    let mut key = alloc::vec::Vec::from(&input[..]);
    key.extend_from_slice(b":seen");
    doc.incr(&key, 1)?;
    if doc.get_vec("big")?.map(|v| v.len()) != Some(300) {
        return Err(edgestate::Error::Status(9));
    }
    if input.len() == 4 {
        Doc::open("nope")?;
    }
    if input == b"boom!" {
        panic!("bad input of {} bytes", input.len());
    }
    Ok(())
}

edgestate::entry!(run);
"""


def _runtime_run(
    wasm: bytes, publisher: Publisher, data: Path, inputs: list[bytes]
) -> tuple[list[object], Store]:
    manifest = json.dumps(
        {
            "name": "helpers",
            "version": "1.0.0",
            "documents": {"read": [], "write": ["app"]},
            "limits": {"fuel": 5_000_000, "memory_pages": 32, "max_output_bytes": 256},
        }
    ).encode()
    outcomes: list[object] = []
    store = Store.open(data)
    store.create_document("app")
    store.set("app", "big", b"x" * 300)
    with Runtime(store, TrustPolicy.load(publisher.policy_path), RuntimeConfig()) as runtime:
        runtime.load(
            wasm, manifest, sign_module(wasm, manifest, load_private_key(publisher.key_path))
        )
        for payload in inputs:
            try:
                outcomes.append(runtime.invoke("helpers", payload).status)
            except GuestStatusError as exc:
                outcomes.append(str(exc).rsplit(" ", 1)[-1])
            except GuestTrapError:
                outcomes.append("trap")
    return outcomes, store


def test_zig_run_and_join(build_dir: Path, publisher: Publisher, tmp_path: Path) -> None:
    source = tmp_path / "helpers.zig"
    source.write_text(ZIG)
    wasm = build_zig(source, build_dir).read_bytes()
    outcomes, store = _runtime_run(wasm, publisher, tmp_path / "data", [b"abc", b"abcd"])
    try:
        # "nope" is not granted: ACCESS_DENIED (-2) -> status 102, and nothing commits.
        assert outcomes == [0, "102"]
        assert store.get_counter("app", "abc:seen") == 1
        assert store.get_counter("app", "abcd:seen") is None
    finally:
        store.close()


def test_rust_alloc_feature(
    rustc: Rustc,
    build_dir: Path,
    publisher: Publisher,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    source = tmp_path / "helpers.rs"
    source.write_text(RUST)
    wasm = build_rust(source, build_dir, rustc=rustc, features=("alloc",)).read_bytes()
    with caplog.at_level("DEBUG"):
        outcomes, store = _runtime_run(
            wasm, publisher, tmp_path / "data", [b"abc", b"abcd", b"boom!"]
        )
    try:
        assert outcomes == [0, "102", "trap"]  # the same status as Zig's for the same error
        assert store.get_counter("app", "abc:seen") == 1
        assert store.get_counter("app", "abcd:seen") is None
        assert "bad input of 5 bytes" in caplog.text  # std's hook, formatted
    finally:
        store.close()
