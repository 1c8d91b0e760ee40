"""The epoch ticker runs while a guest runs and parks while none does.

An idle node (or worker) must not wake 500 times a second for nothing, and a
guest that starts after any idle time must still be stopped by its budget, never
before it (the clock restarts from the ticks made: nothing owed for the time
parked, so no burst of ticks moves a fresh deadline early).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edgestate.errors import DeadlineExceededError
from edgestate.runtime import Runtime, TrustPolicy
from edgestate.runtime.engine import EpochTicker, build_engine
from edgestate.store import Store

from .helpers import deploy, manifest, wat

pytestmark = pytest.mark.timeout(60)

FUEL = 1_000_000_000  # over sandbox.GIL_HOLD_MAX_FUEL: guest code runs without the GIL
BUDGET_MS = 50


@pytest.fixture
def ticker() -> Iterator[EpochTicker]:
    t = EpochTicker(build_engine(), 2.0)
    try:
        yield t
    finally:
        t.close()


def test_the_ticker_ticks_only_while_a_guest_runs(ticker: EpochTicker) -> None:
    time.sleep(0.1)
    assert ticker.ticks == 0  # never began: parked from the start
    assert ticker.begin() == 0  # from parked: nothing owed
    deadline = time.monotonic() + 10
    while ticker.ticks < 10:  # 20 ms of ticks (a loaded machine may take longer)
        assert time.monotonic() < deadline, ticker.ticks
        time.sleep(0.005)
    ticker.end()
    time.sleep(0.02)  # the thread notices at its next tick
    parked_at = ticker.ticks
    time.sleep(0.15)
    assert ticker.ticks == parked_at  # parked: no tick for 150 ms
    assert ticker.begin() == 0  # the clock restarts: the parked time is not owed
    ticker.begin()  # a second guest meanwhile: still ticking, one count each
    ticker.end()
    deadline = time.monotonic() + 10
    while ticker.ticks <= parked_at:
        assert time.monotonic() < deadline
        time.sleep(0.005)
    ticker.end()


def test_close_stops_a_parked_ticker_and_a_ticking_one() -> None:
    parked = EpochTicker(build_engine(), 2.0)
    parked.close()
    ticking = EpochTicker(build_engine(), 2.0)
    ticking.begin()
    ticking.close()  # joins: hangs (and times out) if the thread did not hear it


@pytest.fixture
def runtime(store: Store, policy: TrustPolicy) -> Iterator[Runtime]:
    with Runtime(store, policy) as rt:
        yield rt


def test_guests_started_after_idle_end_by_their_budget_never_before(
    runtime: Runtime, key: Ed25519PrivateKey
) -> None:
    deploy(runtime, key, wat("infinite_loop"), manifest("spin", fuel=FUEL, wall_time_ms=BUDGET_MS))
    outcomes: list[BaseException | None] = []

    def spin() -> None:
        try:
            runtime.invoke("spin")
            outcomes.append(None)
        except DeadlineExceededError as exc:
            outcomes.append(exc)

    for idle in (0.0, 0.2, 0.05):
        time.sleep(idle)  # the ticker parks
        threads = [threading.Thread(target=spin, daemon=True) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert not any(t.is_alive() for t in threads)
    assert len(outcomes) == 6
    for exc in outcomes:
        assert isinstance(exc, DeadlineExceededError), exc
        assert exc.ran_ns is not None and exc.ran_ns >= BUDGET_MS * 1_000_000
