"""Guest logging is budgeted per module across invocations, not only per invocation."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edgestate.host import HostLimits
from edgestate.host.logbudget import RECORD_OVERHEAD_BYTES, LogBudget
from edgestate.runtime import Runtime, RuntimeConfig, TrustPolicy
from edgestate.store import Store

from .helpers import deploy, manifest, wat

LINE = 1024 + RECORD_OVERHEAD_BYTES  # what one line of the flood module costs


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def guest_lines() -> object:
    handler = _Lines()
    logger = logging.getLogger("edgestate.guest")
    logger.addHandler(handler)
    old = logger.level
    logger.setLevel(logging.DEBUG)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(old)


def test_a_flooding_module_is_held_to_its_budget_across_invocations(
    store: Store, policy: TrustPolicy, key: Ed25519PrivateKey, tmp_path: Path, guest_lines: _Lines
) -> None:
    # 1 byte/s: the refill during the test is far below one line, so what gets
    # through is the burst (10 lines) whatever the machine's speed.
    host = HostLimits(log_rate_bytes_per_s=1, log_burst_bytes=10 * LINE, log_note_interval_s=3600)
    config = RuntimeConfig(cache_dir=tmp_path / "c", host=host)
    with Runtime(store, policy, config) as runtime:
        deploy(runtime, key, wat("log_flood"), manifest("flood"))
        deploy(runtime, key, wat("log_flood"), manifest("other"))
        for _ in range(20):
            assert runtime.invoke("flood").status == 0  # logging never fails the guest
        # A redeploy does not refill the budget.
        deploy(runtime, key, wat("log_flood"), manifest("flood"))
        runtime.invoke("flood")
        runtime.invoke("other")
        lines = [r for r in guest_lines.records if r.getMessage().startswith("[flood] \x00")]
        notes = [r for r in guest_lines.records if "over its budget" in r.getMessage()]
        assert len(lines) == 10
        assert len(notes) == 2  # one per module per interval
        assert "[flood]" in notes[0].getMessage() and "[other]" in notes[1].getMessage()
        budgets = {b.module: b for b in runtime.log_budgets()}
        assert budgets["flood"].dropped_records == 21 * 64 - 10
        assert budgets["flood"].dropped_bytes == (21 * 64 - 10) * 1024
        # Each module has its own budget: "other" got its own burst.
        assert budgets["other"].dropped_records == 64 - 10


def test_the_bucket_refills_at_its_rate_up_to_its_burst() -> None:
    now = [0.0]
    notes: list[str] = []
    budget = LogBudget(
        "m", rate_bytes_per_s=100, burst_bytes=200, note_interval_s=5, clock=lambda: now[0]
    )
    handler = logging.Handler()
    handler.emit = lambda record: notes.append(record.getMessage())  # type: ignore[method-assign]
    logging.getLogger("edgestate.guest").addHandler(handler)
    try:
        assert budget.take(136)  # 136 + 64 = the whole burst
        assert not budget.take(0)
        now[0] = 0.64  # 64 bytes refilled: one empty line
        assert budget.take(0) and not budget.take(0)
        now[0] = 1000.0  # capped at the burst, not 100 KB
        assert budget.take(136) and not budget.take(0)
        now[0] = 1001.0
        assert not budget.take(100)  # 100 refilled < 164
    finally:
        logging.getLogger("edgestate.guest").removeHandler(handler)
    assert budget.dropped_records == 4 and budget.dropped_bytes == 100
    # Drops at 0, 0.64 and 1000 and 1001: notes at 0 and 1000 (5 s apart at least).
    assert len(notes) == 2 and "dropped 1 line(s)" in notes[0] and "dropped 2 line(s)" in notes[1]
