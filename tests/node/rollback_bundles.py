"""Signed bundles whose output names their version: which version a node serves."""

from __future__ import annotations

import json

import wasmtime

from edgestate.devkit import Bundle, Publisher


def versioned(publisher: Publisher, name: str, version: str, *, build: str = "") -> Bundle:
    """Module ``name`` at ``version``; it answers ``"NAME VERSION BUILD"``.

    ``build`` changes the wasm bytes without changing the version.
    """
    text = f"{name} {version} {build}".strip()
    wasm = wasmtime.wat2wasm(
        '(module (import "edgestate" "output_write" (func $w (param i32 i32) (result i32)))'
        f' (memory (export "memory") 1) (data (i32.const 0) "{text}")'
        f' (func (export "handle") (result i32)'
        f" (drop (call $w (i32.const 0) (i32.const {len(text)}))) i32.const 0))"
    )
    manifest = json.dumps(
        {
            "name": name,
            "version": version,
            "documents": {"read": [], "write": []},
            "limits": {"fuel": 100_000, "memory_pages": 1, "max_output_bytes": 256},
        }
    ).encode()
    return Bundle(name, wasm, manifest, publisher.sign(wasm, manifest))
