"""On a real node: a module flooding its log is held to its budget, counted in metrics."""

from __future__ import annotations

import shutil
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from edgestate.devkit import make_publisher
from edgestate.host.logbudget import RECORD_OVERHEAD_BYTES
from tests.node.api_check import call
from tests.node.conftest import start_node
from tests.node.test_modules_e2e import deploy, invoke, wat_bundle

LINE = 1024 + RECORD_OVERHEAD_BYTES
CALLS = 30


def test_log_flood_is_bounded_per_module_and_counted(tmp_path: Path) -> None:
    publisher = make_publisher(tmp_path / "pub")
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(publisher.policy_path, data / "trust-policy.json")
    config = tmp_path / "node.toml"
    # 1 byte/s: what gets through is the burst, however long the test takes.
    config.write_text(
        "[runtime.host]\n"
        f"log_rate_bytes_per_s = 1\nlog_burst_bytes = {8 * LINE}\nlog_note_interval_s = 3600\n"
    )
    node = start_node(data, "--no-mdns", config=config)
    try:
        assert deploy(node, wat_bundle(publisher, "flood", "log_flood")).status == 201
        before = node.log_path.stat().st_size
        for _ in range(CALLS):
            assert invoke(node, "flood", b"").status == 200
        assert call(node.api, "GET", "/readyz").status == 200
        metrics = call(node.api, "GET", "/metrics").body.decode()
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(metrics)
            for s in f.samples
        }
        dropped = ("edgestate_guest_log_dropped_total", (("module", "flood"),))
        assert samples[dropped] == CALLS * 64 - 8
        dropped_bytes = ("edgestate_guest_log_dropped_bytes_total", (("module", "flood"),))
        assert samples[dropped_bytes] == (CALLS * 64 - 8) * 1024
    finally:
        assert node.stop() == 0, node.log()
    log = node.log()
    assert log.count("[flood] ") == 8 + 1  # the burst, and one note
    assert "guest log over its budget" in log
    # Unbounded, this would be CALLS * 64 KiB; the burst and a note is what it grew by.
    assert node.log_path.stat().st_size - before < 8 * LINE + 4096
