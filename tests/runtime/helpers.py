"""Test helpers: WAT modules, manifests, signing, and an ABI "script" module.

An ABI script is a wasm module generated from a list of host calls with
constant arguments (or the result of an earlier call, for handles). It stores
every result as an i64 at RESULTS + 8*i, outputs them, then outputs the memory
ranges asked for. That lets one test drive any host function from real wasm,
against a real store, with no hand-written WAT per case.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import wasmtime
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edgestate.host.abi import FUNCTIONS
from edgestate.runtime import InvocationResult, LoadedModule, Runtime, sign_module

WAT_DIR = Path(__file__).parent / "wat"
RESULTS = 60000


def wat(name: str) -> bytes:
    """A test module from tests/runtime/wat, compiled to wasm."""
    return wasmtime.wat2wasm((WAT_DIR / f"{name}.wat").read_text())


def manifest(
    name: str,
    *,
    reads: tuple[str, ...] = (),
    writes: tuple[str, ...] = ("app",),
    entry: str | None = None,
    **limits: int,
) -> bytes:
    """Manifest JSON bytes with roomy default limits."""
    doc: dict[str, Any] = {
        "name": name,
        "version": "1.0.0",
        "documents": {"read": list(reads), "write": list(writes)},
        "limits": {"fuel": 50_000_000, "memory_pages": 4, "max_output_bytes": 65536, **limits},
    }
    if entry is not None:
        doc["entry"] = entry
    return json.dumps(doc).encode()


def deploy(
    runtime: Runtime, key: Ed25519PrivateKey, wasm: bytes, manifest_bytes: bytes
) -> LoadedModule:
    """Sign with ``key`` and load."""
    return runtime.load(wasm, manifest_bytes, sign_module(wasm, manifest_bytes, key))


@dataclass(frozen=True)
class R:
    """The result of step ``step``, as an i32 argument (a document handle)."""

    step: int


def _escape(data: bytes) -> str:
    return "".join(f"\\{b:02x}" for b in data)


def abi_script(
    calls: list[tuple[Any, ...]],
    data: dict[int, bytes] | None = None,
    dumps: list[tuple[int, int]] | None = None,
) -> bytes:
    """A module running ``calls`` (``(name, *args)``) in order; see the module doc."""
    functions = {f.name: f for f in FUNCTIONS}
    lines = ["(module"]
    for f in FUNCTIONS:
        params = " ".join(t for _, t in f.params)
        results = f" (result {f.results[0]})" if f.results else ""
        lines.append(
            f'  (import "edgestate" "{f.name}" (func ${f.name} (param {params}){results}))'
        )
    lines.append('  (memory (export "memory") 1)')
    for offset, blob in (data or {}).items():
        lines.append(f'  (data (i32.const {offset}) "{_escape(blob)}")')
    lines.append('  (func (export "handle") (result i32)')
    for i, (name, *args) in enumerate(calls):
        f = functions[name]
        rendered = []
        for (_, ty), arg in zip(f.params, args, strict=True):
            if isinstance(arg, R):
                rendered.append(f"(i32.wrap_i64 (i64.load (i32.const {RESULTS + 8 * arg.step})))")
            else:
                rendered.append(f"({ty}.const {arg})")
        call = f"(call ${name} {' '.join(rendered)})"
        if not f.results:
            lines.append(f"    {call}")
        elif f.results[0] == "i32":
            lines.append(f"    (i64.store (i32.const {RESULTS + 8 * i}) (i64.extend_i32_s {call}))")
        else:
            lines.append(f"    (i64.store (i32.const {RESULTS + 8 * i}) {call})")
    lines.append(
        f"    (drop (call $output_write (i32.const {RESULTS}) (i32.const {8 * len(calls)})))"
    )
    for offset, length in dumps or []:
        lines.append(f"    (drop (call $output_write (i32.const {offset}) (i32.const {length})))")
    lines.append("    i32.const 0))")
    return wasmtime.wat2wasm("\n".join(lines))


def split_output(output: bytes, ncalls: int) -> tuple[list[int], bytes]:
    """Results of each call, and the dumped bytes after them."""
    results = list(struct.unpack(f"<{ncalls}q", output[: 8 * ncalls]))
    return results, output[8 * ncalls :]


# --- probing host functions from wasm (test_host_abi*.py) ------------------------

APP, RO, OTHER, NOPE = 100, 110, 120, 130  # offsets of document names
K1, K2, KBAD, VAL, OUT, CUR = 200, 210, 220, 300, 1000, 5000
DATA = {
    APP: b"app",
    RO: b"ro",
    OTHER: b"other",
    NOPE: b"missing",
    K1: b"k1",
    K2: b"k2",
    KBAD: b"\xff\xfe",
    VAL: b"hello world",
}


def run(
    runtime: Runtime,
    key: Ed25519PrivateKey,
    calls: list[tuple[Any, ...]],
    *,
    data: dict[int, bytes] | None = None,
    dumps: list[tuple[int, int]] | None = None,
    input: bytes = b"",
    reads: tuple[str, ...] = ("ro",),
    writes: tuple[str, ...] = ("app",),
) -> tuple[list[int], bytes, InvocationResult]:
    """Run ``calls`` as an ABI script module "probe": (results, dumped bytes, result)."""
    wasm = abi_script(calls, {**DATA, **(data or {})}, dumps)
    deploy(runtime, key, wasm, manifest("probe", reads=reads, writes=writes))
    result = runtime.invoke("probe", input)
    results, dumped = split_output(result.output, len(calls))
    return results, dumped, result


def open_app() -> tuple[Any, ...]:
    """The call opening the "app" document (handle 0 when first)."""
    return ("doc_open", APP, 3)
