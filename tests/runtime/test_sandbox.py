"""Hostile and failing modules: each ends its own invocation with a clear error,
leaves nothing behind, and the next invocation runs normally."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edgestate.errors import (
    DeadlineExceededError,
    GuestStatusError,
    GuestTrapError,
    MemoryLimitError,
    ModuleCompileError,
    OutOfFuelError,
    OutputTooLargeError,
)
from edgestate.runtime import Runtime
from edgestate.store import Store

from .helpers import deploy, manifest, wat

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def noop(runtime: Runtime, key: Ed25519PrivateKey) -> str:
    deploy(runtime, key, wat("noop"), manifest("noop"))
    return "noop"


def assert_node_fine(runtime: Runtime, noop: str) -> None:
    assert runtime.invoke(noop).status == 0


def test_noop_succeeds_and_reports_fuel_and_timings(runtime: Runtime, noop: str) -> None:
    result = runtime.invoke(noop)
    assert (result.status, result.output, result.writes) == (0, b"", 0)
    assert result.fuel_used > 0
    assert result.instantiate_ns > 0 and result.execute_ns > 0
    assert result.module == noop and result.commit_ns == 0  # no writes, no commit


def test_infinite_loop_runs_out_of_fuel(
    runtime: Runtime, key: Ed25519PrivateKey, noop: str
) -> None:
    deploy(runtime, key, wat("infinite_loop"), manifest("spin", fuel=100_000))
    with pytest.raises(OutOfFuelError, match="fuel") as info:
        runtime.invoke("spin")
    assert info.value.code == "out_of_fuel"  # the outcome a node's metrics count it under
    assert_node_fine(runtime, noop)


def test_infinite_loop_hits_wall_time_deadline(
    runtime: Runtime, key: Ed25519PrivateKey, noop: str
) -> None:
    deploy(
        runtime,
        key,
        wat("infinite_loop"),
        manifest("spin", fuel=1_000_000_000, wall_time_ms=50),
    )
    start = time.monotonic()
    with pytest.raises(DeadlineExceededError, match="50 ms"):
        runtime.invoke("spin")
    assert 0.04 < time.monotonic() - start < 1.0
    assert_node_fine(runtime, noop)


def test_memory_bomb_hits_memory_limit(runtime: Runtime, key: Ed25519PrivateKey, noop: str) -> None:
    deploy(runtime, key, wat("memory_bomb"), manifest("bomb", memory_pages=8))
    with pytest.raises(MemoryLimitError, match="8 pages"):
        runtime.invoke("bomb")
    assert_node_fine(runtime, noop)


def test_memory_bomb_reporting_a_status_hits_memory_limit(
    runtime: Runtime, key: Ed25519PrivateKey
) -> None:
    deploy(runtime, key, wat("memory_bomb_status"), manifest("bomb", memory_pages=9))
    with pytest.raises(MemoryLimitError, match="status 12"):
        runtime.invoke("bomb")


def test_module_needing_more_initial_memory_than_granted_is_refused(
    runtime: Runtime, key: Ed25519PrivateKey
) -> None:
    big = (
        b'(module (memory (export "memory") 10) (func (export "handle") (result i32) i32.const 0))'
    )
    import wasmtime

    with pytest.raises(ModuleCompileError, match="10 memory pages"):
        deploy(runtime, key, wasmtime.wat2wasm(big.decode()), manifest("big", memory_pages=4))


def test_unreachable_traps(runtime: Runtime, key: Ed25519PrivateKey, noop: str) -> None:
    deploy(runtime, key, wat("unreachable"), manifest("trap"))
    with pytest.raises(GuestTrapError, match="unreachable"):
        runtime.invoke("trap")
    assert_node_fine(runtime, noop)


def test_stack_overflow_traps(runtime: Runtime, key: Ed25519PrivateKey, noop: str) -> None:
    deploy(runtime, key, wat("stack_overflow"), manifest("deep"))
    with pytest.raises(GuestTrapError, match="stack"):
        runtime.invoke("deep")
    assert_node_fine(runtime, noop)


@pytest.mark.parametrize("module", ["oob_pointer", "oob_pointer_negative"])
def test_out_of_bounds_pointer_to_host_function_traps(
    runtime: Runtime, key: Ed25519PrivateKey, noop: str, module: str
) -> None:
    deploy(runtime, key, wat(module), manifest("oob"))
    with pytest.raises(GuestTrapError, match="outside guest memory"):
        runtime.invoke("oob")
    assert_node_fine(runtime, noop)


def test_oversized_output_ends_invocation(
    runtime: Runtime, key: Ed25519PrivateKey, noop: str
) -> None:
    deploy(runtime, key, wat("big_output"), manifest("chatty", max_output_bytes=100))
    with pytest.raises(OutputTooLargeError, match="100 output bytes"):
        runtime.invoke("chatty")
    assert_node_fine(runtime, noop)


def test_output_exactly_at_limit_is_fine(runtime: Runtime, key: Ed25519PrivateKey) -> None:
    deploy(runtime, key, wat("big_output"), manifest("chatty", max_output_bytes=1000))
    assert len(runtime.invoke("chatty").output) == 1000


def test_nonzero_status_is_an_error(runtime: Runtime, key: Ed25519PrivateKey) -> None:
    deploy(runtime, key, wat("status"), manifest("polite"))
    with pytest.raises(GuestStatusError, match="status 3"):
        runtime.invoke("polite")


def test_writes_of_a_trapping_invocation_never_become_visible(
    runtime: Runtime, key: Ed25519PrivateKey, store: Store
) -> None:
    deploy(runtime, key, wat("writes_then_trap"), manifest("liar"))
    with pytest.raises(GuestTrapError):
        runtime.invoke("liar")
    assert store.get("app", "k1") is None
    assert store.get("app", "k2") is None
    assert store.get("app", "hits") is None
    assert store.document_info("app").keys == 0


def test_writes_of_a_failed_status_invocation_never_become_visible(
    runtime: Runtime, key: Ed25519PrivateKey, store: Store
) -> None:
    deploy(runtime, key, wat("writes_then_status"), manifest("quitter"))
    with pytest.raises(GuestStatusError):
        runtime.invoke("quitter")
    assert store.get("app", "k1") is None


def test_unknown_host_import_is_refused_at_load(runtime: Runtime, key: Ed25519PrivateKey) -> None:
    with pytest.raises(ModuleCompileError, match="launch_missiles"):
        deploy(runtime, key, wat("unknown_import"), manifest("rogue"))


def test_wrong_host_import_type_is_refused_at_load(
    runtime: Runtime, key: Ed25519PrivateKey
) -> None:
    with pytest.raises(ModuleCompileError, match="wrong type"):
        deploy(runtime, key, wat("wrong_import_type"), manifest("rogue"))


def test_missing_entry_export_is_refused(runtime: Runtime, key: Ed25519PrivateKey) -> None:
    with pytest.raises(ModuleCompileError, match="'main'"):
        deploy(runtime, key, wat("noop"), manifest("noentry", entry="main"))


def test_invalid_wasm_is_refused(runtime: Runtime, key: Ed25519PrivateKey) -> None:
    with pytest.raises(ModuleCompileError, match="compile"):
        deploy(runtime, key, b"\0asm\x01\0\0\0garbage", manifest("junk"))


def test_every_invocation_gets_a_fresh_instance(runtime: Runtime, key: Ed25519PrivateKey) -> None:
    deploy(runtime, key, wat("global_state"), manifest("stateful"))
    outputs = {runtime.invoke("stateful").output for _ in range(5)}
    assert outputs == {(1).to_bytes(4, "little")}


async def test_hostile_invocation_does_not_disturb_concurrent_ones(
    runtime: Runtime, key: Ed25519PrivateKey, noop: str
) -> None:
    import asyncio

    deploy(runtime, key, wat("unreachable"), manifest("trap"))
    results = await asyncio.gather(
        *(runtime.ainvoke("trap" if i % 2 else noop) for i in range(20)),
        return_exceptions=True,
    )
    assert all(isinstance(r, GuestTrapError) for r in results[1::2])
    assert all(getattr(r, "status", None) == 0 for r in results[::2])


# Logs a line (its signal that it is running, so holds its instance slot), then spins.
_SPIN_AFTER_SIGNAL = """(module
  (import "edgestate" "log" (func $log (param i32 i32 i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "spinning")
  (func (export "handle") (result i32)
    (call $log (i32.const 3) (i32.const 0) (i32.const 8))
    (loop $l (br $l))
    i32.const 0))"""


class _Signal(logging.Handler):
    """Sets ``event`` when module ``module`` logs through the host's ``log``."""

    def __init__(self, module: str) -> None:
        super().__init__()
        self.event = threading.Event()
        self._prefix = f"[{module}] "

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith(self._prefix):
            self.event.set()


def test_running_out_of_instance_slots_is_a_clear_error(
    store: Store, policy: Any, key: Ed25519PrivateKey
) -> None:
    import wasmtime

    from edgestate.errors import InvocationError
    from edgestate.runtime import RuntimeConfig

    with Runtime(store, policy, RuntimeConfig(max_instances=1)) as runtime:
        deploy(
            runtime,
            key,
            wasmtime.wat2wasm(_SPIN_AFTER_SIGNAL),
            manifest("spin", fuel=1_000_000_000, wall_time_ms=300),
        )
        deploy(runtime, key, wat("noop"), manifest("noop"))
        outcome: list[BaseException] = []

        def spin() -> None:
            try:
                runtime.invoke("spin")
            except DeadlineExceededError as exc:
                outcome.append(exc)

        running = _Signal("spin")
        guest_log = logging.getLogger("edgestate.guest")
        guest_log.addHandler(running)
        spinner = threading.Thread(target=spin, daemon=True)
        spinner.start()
        try:
            # The guest logs from inside its instance: from then on it holds the slot.
            assert running.event.wait(10), "the spinning module never started"
            with pytest.raises(InvocationError, match="instance slot is busy") as info:
                runtime.invoke("noop")
            assert type(info.value) is InvocationError
        finally:
            guest_log.removeHandler(running)
            spinner.join()
        assert len(outcome) == 1  # the spinner itself ended by its deadline
        assert runtime.invoke("noop").status == 0


def test_start_function_is_sandboxed_like_the_entry(
    runtime: Runtime, key: Ed25519PrivateKey, noop: str
) -> None:
    import wasmtime

    spin_at_start = """(module (memory (export "memory") 1)
      (func $start (loop $l (br $l))) (start $start)
      (func (export "handle") (result i32) i32.const 0))"""
    out_at_start = """(module
      (import "edgestate" "output_write" (func $out (param i32 i32) (result i32)))
      (memory (export "memory") 1)
      (func $start (drop (call $out (i32.const 0) (i32.const 1)))) (start $start)
      (func (export "handle") (result i32) i32.const 0))"""
    deploy(runtime, key, wasmtime.wat2wasm(spin_at_start), manifest("spin", fuel=10_000))
    with pytest.raises(OutOfFuelError):
        runtime.invoke("spin")
    deploy(runtime, key, wasmtime.wat2wasm(out_at_start), manifest("early"))
    with pytest.raises(GuestTrapError, match="start function"):
        runtime.invoke("early")
    assert_node_fine(runtime, noop)
