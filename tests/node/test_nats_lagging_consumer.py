"""A node that lags while connected, past the stream's retention, still converges.

A node stalled for a while (a VM paused, a process starved of CPU: here SIGSTOP)
keeps its NATS connection, so nothing reconnects and the connect-time check of
the stream against its consumer never runs. Meanwhile the stream (a few
kilobytes here) drops what it had not applied yet. When it runs again its
consumer's next message is past the dropped ones: it must see the jump in stream
sequence and heal by anti-entropy rather than carry on without them.
"""

from __future__ import annotations

import shutil
import signal
from pathlib import Path

import pytest

from edgestate.devkit.nats_server import nats_cluster
from edgestate.errors import NodeAPIError
from tests.node.conftest import NodeProcess, eventually, start_node

pytestmark = pytest.mark.skipif(
    shutil.which("nats-server") is None, reason="nats-server not installed (scripts/bootstrap)"
)
DOC = "shared"
KEYS = [f"while-stalled-{i}" for i in range(60)]


def _config(path: Path, url: str) -> Path:
    path.write_text(
        "[sync.nats]\n"
        f'servers = ["{url}"]\n'
        "max_bytes = 4096\n"  # the stream keeps ~10 messages
        "anti_entropy_s = 3600\n"  # no periodic round heals this by chance
        "answer_window_s = 0.5\n"
    )
    return path


def _has(node: NodeProcess, key: str) -> bool:
    try:
        return bool(node.client.get(DOC, key)["found"])
    except NodeAPIError as exc:  # the document has not arrived yet
        if exc.status != 404:
            raise
        return False


def test_a_consumer_stalled_past_retention_heals_without_reconnecting(tmp_path: Path) -> None:
    with nats_cluster(tmp_path / "nats") as servers:
        config = _config(tmp_path / "nats.toml", servers[0].url)
        writer = start_node(tmp_path / "writer", "--no-mdns", config=config)
        stalled: NodeProcess | None = None
        try:
            stalled = start_node(tmp_path / "stalled", "--no-mdns", config=config)
            eventually(lambda: stalled.client.nats()["connected"], 30, "stalled node on NATS")
            writer.client.put(DOC, "before", b"1", create=True)
            eventually(lambda: _has(stalled, "before"), 30, "first write")
            acked = stalled.client.nats()["acked_seq"]

            stalled.proc.send_signal(signal.SIGSTOP)
            try:
                for key in KEYS:  # one commit, one stream message each
                    writer.client.put(DOC, key, b"v" * 40)

                def rolled_over() -> bool:
                    status = writer.client.nats()
                    return bool(status["stream_first_seq"] > acked + len(KEYS) // 2)

                eventually(rolled_over, 30, "the stream dropped what the stalled node lacks")
            finally:
                stalled.proc.send_signal(signal.SIGCONT)

            eventually(lambda: all(_has(stalled, k) for k in KEYS), 60, "every key on the node")
            # The round is counted once its answer window closes, after the keys landed.
            eventually(lambda: stalled.client.nats()["anti_entropy_rounds"] >= 1, 30, "a round")
            status = stalled.client.nats()
            assert status["stream_gaps"] >= 1, status
            assert status["reconnects"] == 0, status  # healed while connected
            assert stalled.log().count("were dropped before this node applied them") >= 1
        finally:
            for node in (stalled, writer):
                if node is not None:
                    assert node.stop() == 0, node.log()
