"""The budget's verdict from the caller's loop (edgestate.runtime.verdict).

Each test holds the guest's thread where its own check cannot stop it: a spinning
guest with the epoch ticker held still (so its epoch deadline never comes), a
guest inside a host call that does not return (its log line's handler, burning
CPU, until the test lets it go). A starved guest (asleep in that handler) is
left to its own thread, grace and backstop alike. The 504 must then come from the loop
while the thread provably still runs (it cannot have ended: the test holds what
it waits for), and only after that does the test release it. No timed asserts:
the 30 s bound only turns a missing answer into a failure instead of a hang;
scripts/bench_containment.py measures how late the answers are.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import wasmtime
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edgestate.errors import DeadlineExceededError
from edgestate.host.budget import GRACE_FACTOR
from edgestate.runtime import InvocationResult, Runtime, RuntimeConfig, TrustPolicy
from edgestate.runtime.admission import AdmissionConfig
from edgestate.store import Store

from .helpers import deploy, manifest, wat
from .test_budget_rule import LOG_THEN_WRITE

pytestmark = pytest.mark.timeout(60)

BUDGET_MS = 200
FUEL = 1_000_000_000  # over sandbox.GIL_HOLD_MAX_FUEL: guest code runs without the GIL
ANSWER_BOUND_S = 30  # not a timing assert: without the verdict there is no answer at all
FROM_THE_LOOP = r"stopped by its caller \(its thread had not stopped yet\)"

# Logs, forever: a guest living in host calls, each checked on entry.
LOG_FOREVER = """
(module
  (import "edgestate" "log" (func $log (param i32 i32 i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "again")
  (func (export "handle") (result i32)
    (loop $forever
      (call $log (i32.const 2) (i32.const 0) (i32.const 5))
      (br $forever))
    i32.const 0))
"""

# Writes app/k1, logs a line, returns 0: a success, if it is ever let finish.
WRITE_LOG_RETURN = """
(module
  (import "edgestate" "doc_open" (func $doc_open (param i32 i32) (result i32)))
  (import "edgestate" "kv_set" (func $kv_set (param i32 i32 i32 i32 i32) (result i32)))
  (import "edgestate" "log" (func $log (param i32 i32 i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "app")
  (data (i32.const 16) "k1")
  (data (i32.const 32) "written")
  (func (export "handle") (result i32)
    (drop (call $kv_set (call $doc_open (i32.const 0) (i32.const 3))
                        (i32.const 16) (i32.const 2) (i32.const 16) (i32.const 2)))
    (call $log (i32.const 2) (i32.const 32) (i32.const 7))
    i32.const 0))
"""

_BLOB = b"x" * (1 << 20)  # hashed with the GIL released: a host call busy on a CPU


@contextmanager
def on_first_guest_log(action: Callable[[], None]) -> Iterator[None]:
    """Run ``action`` on the guest's thread, inside its first log call."""
    first = threading.Event()

    class Hook(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if not first.is_set():
                first.set()
                action()

    handler = Hook()
    guest_log = logging.getLogger("edgestate.guest")
    level = guest_log.level
    guest_log.addHandler(handler)
    guest_log.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        guest_log.removeHandler(handler)
        guest_log.setLevel(level)


def busy_until(release: threading.Event) -> Callable[[], None]:
    """A host call that burns its thread's CPU (not starved) until ``release``."""

    def burn() -> None:
        while not release.is_set():
            hashlib.sha256(_BLOB).digest()

    return burn


class TickerHold:
    """Holds a runtime's epoch ticker still, from the guest's thread (so after its
    guest began) until :meth:`release`: no epoch deadline comes, so a spinning guest
    cannot stop itself, nor end (ending tells the ticker, which waits for it)."""

    def __init__(self, runtime: Runtime) -> None:
        self._lock = runtime._ticker._cond  # the Condition's lock: the ticker's own
        self._held = threading.Event()

    def hold(self) -> None:
        self._lock.acquire()
        self._held.set()

    def release(self) -> None:
        if self._held.is_set():
            self._held.clear()
            self._lock.release()


def run(scenario: Coroutine[Any, Any, None]) -> None:
    asyncio.run(scenario)


async def answer(task: asyncio.Future[InvocationResult]) -> BaseException | InvocationResult:
    try:
        return await asyncio.wait_for(asyncio.shield(task), ANSWER_BOUND_S)
    except DeadlineExceededError as exc:
        return exc


async def until(condition: Callable[[], bool]) -> None:
    """Wait (on the loop) for the guest's thread to do what it must eventually."""
    stop = time.monotonic() + ANSWER_BOUND_S
    while not condition():
        assert time.monotonic() < stop, "it never happened"
        await asyncio.sleep(0.005)


def runtime_for(store: Store, policy: TrustPolicy, running: int = 2) -> Runtime:
    # Not niced: on a machine busy with other work a niced busy thread can get under
    # the starved share of a core, and a starved guest is left to its own thread.
    admission = AdmissionConfig(max_running_per_module=running, thread_niceness=0)
    return Runtime(store, policy, RuntimeConfig(admission=admission))


def _verdict(result: BaseException | InvocationResult) -> DeadlineExceededError:
    assert isinstance(result, DeadlineExceededError), result
    assert result.code == "deadline_exceeded"
    # Never early, by the budget's clock (from the request's arrival); the guest's
    # own run, from its start on its thread, is inside it.
    assert result.budget_ns is not None and result.budget_ns >= BUDGET_MS * 1_000_000
    assert result.ran_ns is not None and result.ran_ns <= result.budget_ns
    return result


def test_a_spinning_guest_is_answered_while_its_thread_cannot_stop_itself(
    store: Store, policy: TrustPolicy, key: Ed25519PrivateKey
) -> None:
    async def scenario() -> None:
        with runtime_for(store, policy) as runtime:
            m = manifest("spin", fuel=FUEL, wall_time_ms=BUDGET_MS)
            deploy(runtime, key, wat("log_then_spin"), m)
            ticker = TickerHold(runtime)
            try:
                with on_first_guest_log(ticker.hold):
                    task = asyncio.ensure_future(runtime.ainvoke("spin"))
                    error = _verdict(await answer(task))
                    assert "stopped by its caller" in str(error), error
                    # Still spinning: it cannot end while the ticker is held.
                    assert runtime.admission.running("spin") == 1
            finally:
                ticker.release()
            # Let go, it stops itself at the epoch that comes at once; then its slot frees.
            await until(lambda: runtime.admission.running("spin") == 0)

    run(scenario())


def test_a_host_call_loop_is_answered_while_its_thread_is_inside_a_call(
    store: Store, policy: TrustPolicy, key: Ed25519PrivateKey
) -> None:
    async def scenario() -> None:
        with runtime_for(store, policy) as runtime:
            m = manifest("logloop", fuel=FUEL, wall_time_ms=BUDGET_MS)
            deploy(runtime, key, wasmtime.wat2wasm(LOG_FOREVER), m)
            release = threading.Event()
            try:
                with on_first_guest_log(busy_until(release)):
                    result = await answer(asyncio.ensure_future(runtime.ainvoke("logloop")))
                    _verdict(result)
                    assert "stopped by its caller" in str(result)
                    assert "ms of it on a CPU" in str(result)
                    assert runtime.admission.running("logloop") == 1  # still in its call
            finally:
                release.set()
            # Its next call's entry check stops it.
            await until(lambda: runtime.admission.running("logloop") == 0)

    run(scenario())


def test_nothing_a_guest_answered_504_staged_is_committed(
    store: Store, policy: TrustPolicy, key: Ed25519PrivateKey
) -> None:
    async def scenario() -> None:
        with runtime_for(store, policy) as runtime:
            m = manifest("late", fuel=FUEL, wall_time_ms=BUDGET_MS)
            deploy(runtime, key, wasmtime.wat2wasm(WRITE_LOG_RETURN), m)
            release = threading.Event()
            try:
                with on_first_guest_log(busy_until(release)):
                    _verdict(await answer(asyncio.ensure_future(runtime.ainvoke("late"))))
            finally:
                release.set()
            # Its call returns, no check follows: the guest returns 0 with its write
            # staged, a result nobody may commit.
            # Its result has come (and its slot went with it): dropped, not committed.
            await until(lambda: runtime.admission.running("late") == 0)
            assert store.get("app", "k1") is None
            # The same module, let finish in time, does write: the key was writable.
            done = await runtime.ainvoke("late")
            assert done.writes == 1 and store.get("app", "k1") == b"k1"

    run(scenario())


def test_the_slot_of_an_answered_guest_is_held_until_its_thread_ends(
    store: Store, policy: TrustPolicy, key: Ed25519PrivateKey
) -> None:
    async def scenario() -> None:
        with runtime_for(store, policy, running=1) as runtime:
            m = manifest("spin", fuel=FUEL, wall_time_ms=BUDGET_MS)
            deploy(runtime, key, wat("log_then_spin"), m)
            ticker = TickerHold(runtime)
            second: asyncio.Future[InvocationResult] | None = None
            try:
                with on_first_guest_log(ticker.hold):
                    _verdict(await answer(asyncio.ensure_future(runtime.ainvoke("spin"))))
                    second = asyncio.ensure_future(runtime.ainvoke("spin"))
                    for _ in range(10):
                        await asyncio.sleep(0)
                    # The first guest still runs, so the second waits: one at a time.
                    assert runtime.admission.running("spin") == 1
                    assert runtime.admission.waiting("spin") == 1
            finally:
                ticker.release()
            assert second is not None
            _verdict(await answer(second))  # ran once the first thread ended
            await until(lambda: runtime.admission.running("spin") == 0)

    run(scenario())


def test_a_starved_guest_is_left_to_its_own_thread(
    store: Store, policy: TrustPolicy, key: Ed25519PrivateKey
) -> None:
    async def scenario() -> None:
        with runtime_for(store, policy) as runtime:
            m = manifest("starved", fuel=FUEL, wall_time_ms=BUDGET_MS)
            deploy(runtime, key, wasmtime.wat2wasm(LOG_THEN_WRITE), m)
            # Asleep for 1.5 budgets: under the backstop, so the loop lets it finish.
            hold = threading.Event()
            with on_first_guest_log(lambda: bool(hold.wait(1.5 * BUDGET_MS / 1000))):
                finished = await runtime.ainvoke("starved")
            assert finished.output == b"done"
            # Asleep past the backstop: still left to its thread (from the loop, a
            # starved guest and one whose call returned, waiting for the GIL, look the
            # same), which stops itself at its next check, on entry to output_write.
            with on_first_guest_log(lambda: bool(hold.wait(2.5 * BUDGET_MS / 1000))):
                stopped = await answer(asyncio.ensure_future(runtime.ainvoke("starved")))
            error = _verdict(stopped)
            assert "on entry to host function output_write" in str(error), error
            assert error.budget_ns is not None
            assert error.budget_ns >= GRACE_FACTOR * BUDGET_MS * 1_000_000

    run(scenario())


def test_a_guest_that_ends_in_time_leaves_no_timer_armed(
    store: Store, policy: TrustPolicy, key: Ed25519PrivateKey
) -> None:
    async def scenario() -> None:
        with runtime_for(store, policy) as runtime:
            deploy(runtime, key, wat("noop"), manifest("noop", wall_time_ms=BUDGET_MS))
            results = await asyncio.gather(*(runtime.ainvoke("noop") for _ in range(20)))
            assert all(r.status == 0 for r in results)
            # No timer of theirs is left to fire: the loop's scheduled callbacks are
            # only cancelled handles (or none), never a pending verdict.
            loop = asyncio.get_running_loop()
            pending = [h for h in getattr(loop, "_scheduled", []) if not h.cancelled()]
            assert pending == []
            assert runtime.admission.running("noop") == 0

    run(scenario())
