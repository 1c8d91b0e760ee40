"""A granted guest log budget (an invocation worker's): tokens only from the node.

The node's side is a plain bucket's withdraw(); the worker's holds what it was
granted, asks for a batch below half a batch, one request at a time, and after
a short grant waits for the node's bucket to refill before asking again.
"""

from __future__ import annotations

from edgestate.host.logbudget import RECORD_OVERHEAD_BYTES, LogBudget, grant_batch_bytes

LINE = 100
COST = LINE + RECORD_OVERHEAD_BYTES


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def granted(clock: Clock, asks: list[int], *, rate: int = 10, burst: int = 8 * COST) -> LogBudget:
    return LogBudget(
        "m",
        rate_bytes_per_s=rate,
        burst_bytes=burst,
        note_interval_s=3600,
        clock=clock,
        ask=lambda module, nbytes: asks.append(nbytes),
        batch_bytes=grant_batch_bytes(burst),
    )


def test_a_granted_budget_logs_only_what_the_node_granted() -> None:
    clock, asks = Clock(), []
    budget = granted(clock, asks)
    batch = grant_batch_bytes(8 * COST)
    assert asks == [batch]  # asked at once, for one batch
    assert not budget.take(LINE)  # nothing granted yet: dropped, and counted
    assert budget.dropped_records == 1
    assert asks == [batch]  # one request at a time
    clock.now += 3600  # time alone never refills a granted budget
    assert not budget.take(LINE)
    budget.grant(batch)
    assert budget.take(LINE)  # 2 lines per batch: the second asks for more
    assert budget.take(LINE)
    assert asks == [batch, batch]
    assert not budget.take(LINE)


def test_after_a_short_grant_it_waits_for_the_node_to_refill() -> None:
    clock, asks = Clock(), []
    rate = 10
    budget = granted(clock, asks, rate=rate)
    batch = asks[0]
    budget.grant(COST)  # the node had one line left
    assert budget.take(LINE)
    assert not budget.take(LINE)
    assert len(asks) == 1  # not asked again: the node's bucket is short
    clock.now += (batch - COST) / rate  # long enough for it to refill the rest
    assert not budget.take(LINE)
    assert len(asks) == 2


def test_the_nodes_bucket_gives_at_most_its_tokens() -> None:
    clock = Clock()
    bucket = LogBudget(
        "m", rate_bytes_per_s=10, burst_bytes=1000, note_interval_s=3600, clock=clock
    )
    assert bucket.withdraw(600) == 600
    assert bucket.withdraw(600) == 400
    assert bucket.withdraw(600) == 0
    clock.now += 5
    assert bucket.withdraw(600) == 50
    clock.now += 3600
    assert bucket.withdraw(5000) == 1000  # never more than the burst
