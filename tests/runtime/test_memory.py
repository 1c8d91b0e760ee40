"""The fast memory and host-call layer, against a real wasmtime instance."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any

import pytest
import wasmtime

from edgestate.errors import GuestFault, GuestTrapError
from edgestate.host.memory import (
    ADDRESS_SPACE,
    VAL_RAW_SIZE,
    WASM_PAGE,
    GuestMemory,
    LinkerFunctions,
    make_trap,
    slot_struct,
)
from edgestate.runtime.engine import build_engine

GROWABLE = """(module
  (memory (export "memory") 1 4)
  (func (export "grow") (result i32) (memory.grow (i32.const 1))))"""


@pytest.fixture
def instance() -> Iterator[tuple[wasmtime.Store, wasmtime.Instance, GuestMemory]]:
    engine = build_engine()
    store = wasmtime.Store(engine)
    store.set_fuel(1_000_000)
    store.set_epoch_deadline(1_000_000)
    inst = wasmtime.Instance(store, wasmtime.Module(engine, wasmtime.wat2wasm(GROWABLE)), [])
    memory = GuestMemory(store._context(), inst._instance)
    memory.ready = True
    yield store, inst, memory


def test_val_raw_slots_are_16_bytes() -> None:
    assert VAL_RAW_SIZE == 16
    assert slot_struct(["i32", "i64", "i32s"]).size == 48


def test_pointers_read_unsigned_and_i64_signed() -> None:
    buffer = bytearray(48)
    struct.pack_into("<i", buffer, 0, -16)
    struct.pack_into("<q", buffer, 16, -5)
    struct.pack_into("<i", buffer, 32, -1)
    assert slot_struct(["i32", "i64", "i32s"]).unpack_from(buffer) == (2**32 - 16, -5, -1)


def test_read_write_round_trip(instance: Any) -> None:
    store, inst, memory = instance
    memory.write(100, b"hello")
    assert memory.read(100, 5) == b"hello"
    assert inst.exports(store)["memory"].read(store, 100, 105) == b"hello"
    memory.write_i64(200, -2)
    assert memory.read(200, 8) == struct.pack("<q", -2)
    assert memory.text(100, 5) == "hello"


def test_range_ending_exactly_at_the_end_is_inside(instance: Any) -> None:
    _, _, memory = instance
    assert memory.read(WASM_PAGE - 4, 4) == b"\0" * 4
    assert memory.read(WASM_PAGE, 0) == b""


@pytest.mark.parametrize(
    ("ptr", "length"), [(WASM_PAGE - 3, 4), (WASM_PAGE, 1), (2**32 - 1, 1), (0, 2**32 - 1)]
)
def test_range_outside_memory_is_a_guest_fault(instance: Any, ptr: int, length: int) -> None:
    _, _, memory = instance
    with pytest.raises(GuestFault) as info:
        memory.read(ptr, length)
    assert isinstance(info.value.error, GuestTrapError)
    assert "outside guest memory" in str(info.value)


def test_write_past_the_end_is_a_guest_fault(instance: Any) -> None:
    _, _, memory = instance
    with pytest.raises(GuestFault):
        memory.write(WASM_PAGE - 2, b"abc")
    with pytest.raises(GuestFault):
        memory.write_i64(WASM_PAGE - 7, 1)


def test_memory_grown_by_the_guest_becomes_addressable(instance: Any) -> None:
    store, inst, memory = instance
    with pytest.raises(GuestFault):
        memory.read(WASM_PAGE, 8)
    assert inst.exports(store)["grow"](store) == 1
    assert memory.read(WASM_PAGE, 8) == b"\0" * 8
    assert memory.size == 2 * WASM_PAGE


def test_address_space_view_reads_process_memory() -> None:
    import ctypes

    buffer = ctypes.create_string_buffer(b"abc")
    address = ctypes.addressof(buffer)
    assert ADDRESS_SPACE[address : address + 3].tobytes() == b"abc"


def test_unchecked_host_function_receives_args_and_returns_results() -> None:
    engine = build_engine()
    linker = wasmtime.Linker(engine)
    seen: list[tuple[int, ...]] = []
    layout, result = slot_struct(["i32", "i64"]), slot_struct(["i32s"])

    def add(_env: Any, _caller: Any, args: int, _n: int) -> int:
        a, b = layout.unpack_from(ADDRESS_SPACE, args)
        seen.append((a, b))
        result.pack_into(ADDRESS_SPACE, args, a + b)
        return 0

    def fail(_env: Any, _caller: Any, _args: int, _n: int) -> int:
        return make_trap("deliberate")

    functions = LinkerFunctions(linker)
    functions.define("t", "add", ["i32", "i64"], ["i32"], add)
    functions.define("t", "fail", [], [], fail)
    wat = """(module
      (import "t" "add" (func $add (param i32 i64) (result i32)))
      (import "t" "fail" (func $fail))
      (func (export "run") (result i32) (call $add (i32.const 40) (i64.const -2)))
      (func (export "boom") (call $fail)))"""
    store = wasmtime.Store(engine)
    store.set_fuel(10_000)
    store.set_epoch_deadline(1_000_000)
    inst = linker.instantiate(store, wasmtime.Module(engine, wasmtime.wat2wasm(wat)))
    assert inst.exports(store)["run"](store) == 38
    assert seen == [(40, -2)]
    with pytest.raises(wasmtime.WasmtimeError, match="deliberate"):
        inst.exports(store)["boom"](store)


def test_memory_of_an_unfilled_instance_is_refused_not_touched() -> None:
    engine = build_engine()
    store = wasmtime.Store(engine)
    memory = GuestMemory(store._context(), wasmtime._ffi.wasmtime_instance_t())
    with pytest.raises(GuestFault, match="start function"):
        memory.read(0, 1)


def test_host_function_called_outside_an_invocation_traps(runtime: Any, key: Any) -> None:
    # Instantiating on the runtime's linker directly bypasses Sandbox.run.
    wat = """(module (import "edgestate" "now_ms" (func $now (result i64)))
      (memory (export "memory") 1)
      (func (export "handle") (result i32) (drop (call $now)) i32.const 0))"""
    store = wasmtime.Store(runtime.engine)
    store.set_fuel(10_000)
    store.set_epoch_deadline(1_000_000)
    module = wasmtime.Module(runtime.engine, wasmtime.wat2wasm(wat))
    instance = runtime.linker.instantiate(store, module)
    with pytest.raises(wasmtime.WasmtimeError, match="outside an invocation"):
        instance.exports(store)["handle"](store)
