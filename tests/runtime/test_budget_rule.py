"""The wall-time budget rule (edgestate.host.budget, edgestate.runtime.budget).

A guest that spins in wasm and one that loops on host calls both end by their
budget, never before it (the epoch deadline only says when to look; the clock
decides). A guest whose thread was starved (here: kept asleep inside a host
call, so it got no CPU) past its budget runs on and finishes, within twice its
budget; past that backstop it is stopped however starved. No timed upper
bounds: scripts/bench_containment.py reports the overrun distribution.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import pytest
import wasmtime
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edgestate.errors import DeadlineExceededError
from edgestate.host.abi import HostContext, HostEnv, HostLimits
from edgestate.host.budget import GRACE_FACTOR, STARVED_CPU_SHARE, budget_spent
from edgestate.host.kv import Grants
from edgestate.runtime import InvocationResult, Runtime, TrustPolicy
from edgestate.store import Set, Store

from .helpers import deploy, manifest, wat

pytestmark = pytest.mark.timeout(60)

BUDGET_MS = 100
FUEL = 1_000_000_000  # over sandbox.GIL_HOLD_MAX_FUEL: guest code runs without the GIL

# Logs a line, then writes "done" and returns 0: two host calls, nothing else.
LOG_THEN_WRITE = """
(module
  (import "edgestate" "log" (func $log (param i32 i32 i32)))
  (import "edgestate" "output_write" (func $out (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "started")
  (data (i32.const 16) "done")
  (func (export "handle") (result i32)
    (call $log (i32.const 2) (i32.const 0) (i32.const 7))
    (drop (call $out (i32.const 16) (i32.const 4)))
    i32.const 0))
"""


@pytest.fixture
def runtime(store: Store, policy: TrustPolicy) -> Iterator[Runtime]:
    with Runtime(store, policy) as rt:
        yield rt


def _ran_ms(exc: pytest.ExceptionInfo[DeadlineExceededError]) -> float:
    assert exc.value.ran_ns is not None
    return exc.value.ran_ns / 1e6


def test_a_spinning_guest_ends_by_its_budget_never_before(
    runtime: Runtime, key: Ed25519PrivateKey
) -> None:
    deploy(runtime, key, wat("infinite_loop"), manifest("spin", fuel=FUEL, wall_time_ms=BUDGET_MS))
    for _ in range(5):
        with pytest.raises(DeadlineExceededError, match=r"stopped in wasm code after") as exc:
            runtime.invoke("spin")
        assert _ran_ms(exc) >= BUDGET_MS


def test_a_host_call_loop_ends_by_its_budget_never_before(
    runtime: Runtime, store: Store, key: Ed25519PrivateKey
) -> None:
    store.batch([Set("bench", "big", b"x" * (1 << 20))])
    m = manifest("hostloop", reads=("bench",), fuel=FUEL, wall_time_ms=BUDGET_MS, memory_pages=20)
    deploy(runtime, key, wat("kv_get_forever"), m)
    for _ in range(5):
        # Whichever check comes first past the deadline stops it: a host call's or
        # the epoch's (between two calls); test_deadline_host_calls isolates the first.
        with pytest.raises(DeadlineExceededError, match=r"stopped (in wasm|on entry to)") as exc:
            runtime.invoke("hostloop")
        assert _ran_ms(exc) >= BUDGET_MS


def _starve(runtime: Runtime, hold_ms: int) -> InvocationResult | BaseException:
    """Invoke ``starved``, whose thread is kept off the CPU for ``hold_ms`` in its log call.

    The guest thread sleeps inside its first host call (the log handler): wall
    time passes while its thread gets no CPU, which is what starvation looks like
    to the rule. Its next host call then finds its deadline passed.
    """

    class Hold(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            time.sleep(hold_ms / 1000)

    handler = Hold()
    guest_log = logging.getLogger("edgestate.guest")
    guest_log.addHandler(handler)
    level = guest_log.level
    guest_log.setLevel(logging.DEBUG)  # whatever the level of the line, it is seen
    try:
        return runtime.invoke("starved")
    except DeadlineExceededError as exc:
        return exc
    finally:
        guest_log.removeHandler(handler)
        guest_log.setLevel(level)


def test_a_starved_guest_gets_its_grace_up_to_the_backstop(
    runtime: Runtime, key: Ed25519PrivateKey
) -> None:
    deploy(
        runtime,
        key,
        wasmtime.wat2wasm(LOG_THEN_WRITE),
        manifest("starved", fuel=FUEL, wall_time_ms=200),
    )
    # Kept off the CPU for 1.5 budgets: under the backstop, so it finishes.
    finished = _starve(runtime, 300)
    assert isinstance(finished, InvocationResult), finished
    assert finished.output == b"done"
    # Kept for 2.5 budgets: past the backstop, stopped however starved.
    stopped = _starve(runtime, 500)
    assert isinstance(stopped, DeadlineExceededError)
    assert "on entry to host function output_write" in str(stopped)
    assert stopped.ran_ns is not None and stopped.ran_ns >= GRACE_FACTOR * 200_000_000


def test_the_rule_past_a_deadline(store: Store) -> None:
    # The rule alone, on a real context and this thread's real CPU clock.
    context = _context(store, wall_time_ms=100)
    now = time.monotonic_ns()
    ms = 1_000_000
    context.arrived_ns = context.started_ns = now - 150 * ms
    context.deadline_ns = context.arrived_ns + 100 * ms
    context.cpu_start_ns = time.thread_time_ns()  # no CPU since it "started": starved
    assert not budget_spent(context, now)
    busy = int(STARVED_CPU_SHARE * 150 * ms) + ms  # just over the share of a core
    context.cpu_start_ns = time.thread_time_ns() - busy
    assert budget_spent(context, now)
    context.cpu_start_ns = time.thread_time_ns()
    assert budget_spent(context, context.arrived_ns + GRACE_FACTOR * 100 * ms)  # the backstop


def test_time_before_the_guest_started_counts_as_starvation(store: Store) -> None:
    # Arrived 150 ms ago with a 100 ms budget, started on its thread only 20 ms
    # ago (it waited for a slot or a core): 5 ms of CPU is 25 % of its run but
    # 3.3 % of the time since it arrived, so it was starved, not busy, and runs on;
    # the deadline, the window and the backstop all count from its arrival.
    context = _context(store, wall_time_ms=100)
    now = time.monotonic_ns()
    ms = 1_000_000
    context.arrived_ns = now - 150 * ms
    context.started_ns = now - 20 * ms
    context.deadline_ns = context.arrived_ns + 100 * ms
    context.cpu_start_ns = time.thread_time_ns() - 5 * ms
    assert not budget_spent(context, now)
    busy = int(STARVED_CPU_SHARE * 150 * ms) + ms  # just over the share since arrival
    context.cpu_start_ns = time.thread_time_ns() - busy
    assert budget_spent(context, now)
    context.cpu_start_ns = time.thread_time_ns()
    assert budget_spent(context, context.arrived_ns + GRACE_FACTOR * 100 * ms)  # the backstop


def _context(store: Store, *, wall_time_ms: int) -> HostContext:
    """A real host context for the rule alone (no guest, no memory)."""
    env = HostEnv(
        store=store,
        grants=Grants(frozenset(), frozenset()),
        max_output=0,
        limits=HostLimits(),
        module="m",
        wall_time_ms=wall_time_ms,
    )
    return HostContext(env, b"", None)  # type: ignore[arg-type]  # no memory needed
