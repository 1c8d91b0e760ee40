"""On a real node with two workers: a module's guest log budget is node-wide.

Each worker's budget for a module is granted by the node out of one bucket
(edgestate.node.workers.logshare), so a module flooding its log through both
workers gets the budget once, not once per worker. Counted in lines: the rate
is 1 byte/s, so what gets through is the burst, however long the test takes.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from edgestate.devkit import make_publisher
from edgestate.host.logbudget import RECORD_OVERHEAD_BYTES
from tests.node.api_check import call
from tests.node.conftest import start_node
from tests.node.test_modules_e2e import deploy, invoke, wat_bundle

pytestmark = pytest.mark.timeout(120)

LINE = 1024 + RECORD_OVERHEAD_BYTES  # what one line of log_flood costs
BURST_LINES = 8
PER_CALL = 64  # log_flood's lines per invocation (the per-invocation cap)
MIN_PER_WORKER = 5  # invocations each worker must have served
MAX_CALLS = 400  # the bound of the loop, if the accept queue favours one worker


def test_a_module_logging_on_two_workers_stays_within_one_budget(tmp_path: Path) -> None:
    publisher = make_publisher(tmp_path / "pub")
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(publisher.policy_path, data / "trust-policy.json")
    config = tmp_path / "node.toml"
    config.write_text(
        "[api]\nworkers = 2\nspare_worker = false\n"
        "[runtime.host]\n"
        f"log_rate_bytes_per_s = 1\nlog_burst_bytes = {BURST_LINES * LINE}\n"
        "log_note_interval_s = 3600\n"
    )
    node = start_node(data, "--no-mdns", config=config)
    served: dict[str, int] = {}
    try:
        assert deploy(node, wat_bundle(publisher, "flood", "log_flood")).status == 201
        before = node.log_path.stat().st_size
        calls = 0
        while calls < MAX_CALLS and (len(served) < 2 or min(served.values()) < MIN_PER_WORKER):
            reply = invoke(node, "flood", b"")
            assert reply.status == 200
            worker = reply.headers["X-Edgestate-Worker"]
            served[worker] = served.get(worker, 0) + 1
            calls += 1
        metrics = call(node.api, "GET", "/metrics").body.decode()
        dropped = {
            s.name: s.value
            for f in text_string_to_metric_families(metrics)
            for s in f.samples
            if s.labels.get("module") == "flood"
            and s.name.startswith("edgestate_guest_log_dropped")
        }
    finally:
        assert node.stop() == 0, node.log()
    assert set(served) == {"0", "1"} and min(served.values()) >= MIN_PER_WORKER, served
    log = node.log()[before:].splitlines()
    lines = sum("[flood] " in line and "over its budget" not in line for line in log)
    # Per worker, this was up to 2 x BURST_LINES. Granted in whole batches of a
    # quarter burst (2 lines), both workers together got the burst and no more.
    assert lines == BURST_LINES
    assert dropped["edgestate_guest_log_dropped_total"] == calls * PER_CALL - BURST_LINES
    notes = sum("[flood] guest log over its budget" in line for line in log)
    assert 1 <= notes <= 2  # at most one per worker per note interval
    assert node.log_path.stat().st_size - before < BURST_LINES * LINE + 8192
