"""The wall-time budget counts from the request's arrival, not from the guest's start.

What waits before a guest starts (its request's body read, the wait for one of its
module's slots, the hand-off to a thread) is inside its budget, so its answer
comes by arrival + budget (the loop's verdict; the guest's own check by the
next tick) (docs/containment.md, "The wall-time budget"). Each test gives a
request an arrival the test knows (``arrived_ns``, what the HTTP route passes),
or makes it wait behind a guest the test holds; what is asserted is the budget's
accounting (``budget_ns`` against ``ran_ns``) and who answered, never how fast.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
import wasmtime
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edgestate.errors import BusyError, DeadlineExceededError
from edgestate.runtime import Runtime, RuntimeConfig, TrustPolicy
from edgestate.runtime.admission import AdmissionConfig
from edgestate.store import Store

from .helpers import deploy, manifest, wat
from .test_budget_rule import LOG_THEN_WRITE
from .test_budget_verdict import FUEL, TickerHold, answer, on_first_guest_log, until

pytestmark = pytest.mark.timeout(60)

BUDGET_MS = 300
MS = 1_000_000
# How long before the call the test's request "arrived" (its body was read, say).
HEAD_START_MS = 120


def runtime_for(store: Store, policy: TrustPolicy, running: int, queue_wait_ms: int) -> Runtime:
    # Not niced (as test_budget_verdict): a niced busy thread on a busy machine can
    # get under the starved share of a core, and a starved guest runs on.
    admission = AdmissionConfig(
        max_running_per_module=running, thread_niceness=0, queue_wait_ms=queue_wait_ms
    )
    return Runtime(store, policy, RuntimeConfig(admission=admission))


@pytest.mark.parametrize("who", ["ticker-running", "ticker-held"])
def test_a_guest_gets_what_is_left_of_its_budget_after_its_arrival(
    store: Store, policy: TrustPolicy, key: Ed25519PrivateKey, who: str
) -> None:
    async def scenario() -> None:
        with runtime_for(store, policy, running=2, queue_wait_ms=1000) as runtime:
            m = manifest("spin", fuel=FUEL, wall_time_ms=BUDGET_MS)
            deploy(runtime, key, wat("log_then_spin"), m)
            # "ticker-held": the ticker held still from the guest's first log on, so
            # only the loop's timer (armed at arrival + budget) can answer.
            ticker = TickerHold(runtime)
            hold = ticker.hold if who == "ticker-held" else (lambda: None)
            try:
                with on_first_guest_log(hold):
                    arrived = time.monotonic_ns() - HEAD_START_MS * MS
                    task = asyncio.ensure_future(runtime.ainvoke("spin", arrived_ns=arrived))
                    error = await answer(task)
            finally:
                ticker.release()
            assert isinstance(error, DeadlineExceededError), error
            if who == "ticker-held":  # else either may answer first
                assert "stopped by its caller" in str(error), error
            assert error.budget_ns is not None and error.ran_ns is not None
            # Never early by the budget's clock, which started at the arrival...
            assert error.budget_ns >= BUDGET_MS * MS
            # ...before the guest did: its own run is short of the budget by at least
            # the head start (both are read at the same stop).
            assert error.budget_ns - error.ran_ns >= HEAD_START_MS * MS
            await until(lambda: runtime.admission.running("spin") == 0)

    asyncio.run(scenario())


def test_a_queued_request_is_answered_by_its_deadline_not_after_its_wait(
    store: Store, policy: TrustPolicy, key: Ed25519PrivateKey
) -> None:
    async def scenario() -> None:
        # One slot, and a queue wait far past the budget: before, the second request
        # waited for the slot however long the first held it, then had a whole
        # budget of its own on top.
        with runtime_for(store, policy, running=1, queue_wait_ms=60_000) as runtime:
            m = manifest("spin", fuel=FUEL, wall_time_ms=BUDGET_MS)
            deploy(runtime, key, wat("spin_if_input"), m)
            ticker = TickerHold(runtime)
            try:
                with on_first_guest_log(ticker.hold):
                    first = asyncio.ensure_future(runtime.ainvoke("spin", b"x"))
                    await until(lambda: runtime.admission.running("spin") == 1)
                    second = asyncio.ensure_future(runtime.ainvoke("spin", b"x"))
                    with pytest.raises(BusyError, match="wall-time budget"):
                        await asyncio.wait_for(second, 30)  # no timing: a hang bound
                    # The first guest's thread still holds the slot (it cannot stop
                    # while the ticker is held): the second never ran, and its answer
                    # came when its budget ran out in the queue.
                    assert runtime.admission.running("spin") == 1
                    assert isinstance(await answer(first), DeadlineExceededError)
            finally:
                ticker.release()
            await until(lambda: runtime.admission.running("spin") == 0)
            # A short run is not shortchanged: with the slot free it runs and succeeds.
            done = await runtime.ainvoke("spin", b"")
            assert done.status == 0

    asyncio.run(scenario())


def test_a_starved_guest_with_a_head_start_finishes_within_its_grace(
    store: Store, policy: TrustPolicy, key: Ed25519PrivateKey
) -> None:
    # Its thread asleep past its deadline (starved) is left to run on, as before,
    # by its thread and by the loop: its answer is its own result, not a 504, since
    # it ends within its grace (twice its budget from its arrival).
    async def scenario() -> None:
        with runtime_for(store, policy, running=2, queue_wait_ms=1000) as runtime:
            m = manifest("slow", fuel=FUEL, wall_time_ms=BUDGET_MS)
            deploy(runtime, key, wasmtime.wat2wasm(LOG_THEN_WRITE), m)
            hold = threading.Event()
            # Arrived a head start ago, then asleep in its first host call until
            # past its deadline, under its backstop (twice its budget from arrival).
            asleep_s = (BUDGET_MS - HEAD_START_MS) / 1000 + 0.05
            with on_first_guest_log(lambda: bool(hold.wait(asleep_s))):
                arrived = time.monotonic_ns() - HEAD_START_MS * MS
                finished = await runtime.ainvoke("slow", arrived_ns=arrived)
            assert finished.output == b"done"

    asyncio.run(scenario())
