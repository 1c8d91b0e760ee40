"""kv_get of values big enough to be copied into guest memory by ``memmove`` with the
GIL released (``Memory.write_from``), from the store and from the invocation's own
staged writes, either side of the threshold: real wasm, a real store."""

from __future__ import annotations

import pytest
import wasmtime
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edgestate.host.memory import _UNLOCKED_COPY_BYTES
from edgestate.runtime import Runtime
from edgestate.store import Store

from .helpers import deploy, manifest

pytestmark = pytest.mark.timeout(60)

OUT = 1 << 16  # guest memory offset the value is read to
CAP = 3 << 16

# Reads "big" of "app" to OUT and outputs what it read. With an input, first
# stages a kv_set of "big" from the input's bytes (copied to OUT), so the read
# comes from the invocation's overlay instead of the store.
WAT = f"""
(module
  (import "edgestate" "doc_open" (func $doc_open (param i32 i32) (result i32)))
  (import "edgestate" "kv_get" (func $kv_get (param i32 i32 i32 i32 i32) (result i32)))
  (import "edgestate" "kv_set" (func $kv_set (param i32 i32 i32 i32 i32) (result i32)))
  (import "edgestate" "input_read" (func $input_read (param i32 i32) (result i32)))
  (import "edgestate" "output_write" (func $output_write (param i32 i32) (result i32)))
  (memory (export "memory") 5)
  (data (i32.const 0) "app")
  (data (i32.const 16) "big")
  (func (export "handle") (result i32)
    (local $h i32) (local $n i32)
    (local.set $h (call $doc_open (i32.const 0) (i32.const 3)))
    (local.set $n (call $input_read (i32.const {OUT}) (i32.const {CAP})))
    (if (i32.gt_s (local.get $n) (i32.const 0))
      (then
        (drop (call $kv_set (local.get $h) (i32.const 16) (i32.const 3)
                            (i32.const {OUT}) (local.get $n)))
        ;; wipe the staged bytes' source, so only the read can put them back
        (memory.fill (i32.const {OUT}) (i32.const 0) (local.get $n))))
    (local.set $n (call $kv_get (local.get $h) (i32.const 16) (i32.const 3)
                                (i32.const {OUT}) (i32.const {CAP})))
    ;; at most the buffer: a value longer than it was not copied at all
    (drop (call $output_write (i32.const {OUT})
      (select (local.get $n) (i32.const {CAP}) (i32.le_s (local.get $n) (i32.const {CAP})))))
    i32.const 0))
"""

SIZES = [
    _UNLOCKED_COPY_BYTES - 1,
    _UNLOCKED_COPY_BYTES,
    _UNLOCKED_COPY_BYTES + 1,
    CAP,
]


def _value(size: int) -> bytes:
    return bytes((i * 7 + size) % 251 for i in range(size))


def _deploy(runtime: Runtime, key: Ed25519PrivateKey) -> None:
    limits = {"memory_pages": 5, "max_output_bytes": CAP}
    deploy(runtime, key, wasmtime.wat2wasm(WAT), manifest("big", writes=("app",), **limits))


@pytest.mark.parametrize("size", SIZES, ids=[f"{s}B" for s in SIZES])
def test_a_big_value_from_the_store_arrives_whole(
    runtime: Runtime, key: Ed25519PrivateKey, store: Store, size: int
) -> None:
    value = _value(size)
    store.set("app", "big", value)
    _deploy(runtime, key)
    assert runtime.invoke("big", b"").output == value


@pytest.mark.parametrize("size", SIZES, ids=[f"{s}B" for s in SIZES])
def test_a_big_staged_value_arrives_whole(
    runtime: Runtime, key: Ed25519PrivateKey, store: Store, size: int
) -> None:
    store.set("app", "big", b"old")
    _deploy(runtime, key)
    value = _value(size)
    assert runtime.invoke("big", value).output == value


def test_a_value_too_big_for_the_buffer_is_not_copied(
    runtime: Runtime, key: Ed25519PrivateKey, store: Store
) -> None:
    store.set("app", "big", _value(CAP + 1))
    _deploy(runtime, key)
    # kv_get answers the length and copies nothing: the buffer is as it was.
    assert runtime.invoke("big", b"").output == bytes(CAP)
