"""Signals during a write burst: nothing acknowledged is lost, however the node stops."""

from __future__ import annotations

import shutil
import signal
import threading
import time
from pathlib import Path

import pytest

from edgestate.client import NodeAPIError, NodeClient, NodeUnreachableError
from edgestate.devkit import example_bundle, make_publisher
from tests.node.conftest import NodeProcess, eventually, start_node

REPO = Path(__file__).resolve().parents[2]


def _burst(client: NodeClient, acked: list[str], stop: threading.Event, w: int) -> None:
    i = 0
    while not stop.is_set():
        key = f"w{w}-{i}"
        try:
            # Alternate module invocations and admin writes: both are durable paths.
            if i % 2:
                client.invoke("kv-echo", f"{key}={key}".encode())
            else:
                client.put("kv", key, key.encode())
        except (NodeAPIError, NodeUnreachableError):
            return  # refused or cut off: not acknowledged, so not counted
        acked.append(key)
        i += 1


def _node_with_kv_echo(data: Path) -> NodeProcess:
    publisher = make_publisher(data.parent / "publisher")
    data.mkdir(parents=True, exist_ok=True)
    shutil.copy(publisher.policy_path, data / "trust-policy.json")
    node = start_node(data, "--no-mdns")
    bundle = example_bundle("kv_echo", publisher, REPO / "build" / "guest-wasm")
    node.client.deploy(bundle.wasm, bundle.manifest, bundle.signature)
    return node


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_no_acknowledged_write_is_lost(tmp_path: Path, sig: int) -> None:
    data = tmp_path / "data"
    node = _node_with_kv_echo(data)
    client = NodeClient(node.api, node.token, timeout=10)
    acked: list[str] = []
    stop = threading.Event()
    threads = [
        threading.Thread(target=_burst, args=(client, acked, stop, w), daemon=True)
        for w in range(8)
    ]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 20
    while len(acked) < 300 and time.monotonic() < deadline:
        time.sleep(0.01)
    code = node.stop(sig)
    stop.set()
    for t in threads:
        t.join(timeout=20)
    assert len(acked) >= 300, node.log()
    if sig == signal.SIGTERM:
        assert code == 0, node.log()
        assert "shutting down gracefully" in node.log()
    restarted = start_node(data, "--no-mdns")
    try:
        page_keys: set[str] = set()
        cursor = None
        rc = NodeClient(restarted.api, restarted.token)
        while True:
            page = rc.scan("kv", "", cursor, 10_000)
            page_keys |= {i["key"] for i in page["items"]}
            cursor = page["cursor"]
            if cursor is None:
                break
        missing = [k for k in acked if k not in page_keys]
        assert not missing, f"{len(missing)} acknowledged writes lost, e.g. {missing[:5]}"
    finally:
        assert restarted.stop() == 0


def test_a_second_signal_exits_at_once(tmp_path: Path) -> None:
    node = start_node(tmp_path / "data", "--no-mdns")
    client = NodeClient(node.api, node.token)
    client.put("d", "k", b"v", create=True)
    # An open watch stream is the kind of long request a graceful stop would wait for.
    stream = client.watch("d")
    node.proc.send_signal(signal.SIGTERM)
    node.proc.send_signal(signal.SIGINT)
    code = node.proc.wait(timeout=10)
    assert code in (0, 130), node.log()
    del stream
    restarted = start_node(tmp_path / "data", "--no-mdns")
    try:
        assert NodeClient(restarted.api, restarted.token).get("d", "k")["found"]
    finally:
        restarted.stop()


def test_a_connected_cluster_stopping_at_once_exits_cleanly(tmp_path: Path) -> None:
    # Three peers stopping together is what the demo does; it once left a node
    # waiting forever on a websocket close nobody would answer.
    first = start_node(tmp_path / "a", "--no-mdns")
    nodes = [first]
    for name in ("b", "c"):
        nodes.append(
            start_node(tmp_path / name, "--no-mdns", "--peer", f"127.0.0.1:{first.sync_port}")
        )
    try:
        eventually(
            lambda: sum(n.client.status()["connected_peers"] for n in nodes) >= 4,
            20,
            "the nodes connecting",
        )
        for n in nodes:
            n.proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        codes = [n.proc.wait(timeout=30) for n in nodes]
        assert codes == [0, 0, 0], [n.log()[-2000:] for n in nodes]
        assert time.monotonic() - started < 15
    finally:
        for n in nodes:
            n.stop()


def test_json_log_lines(tmp_path: Path) -> None:
    import json

    node = start_node(tmp_path / "data", "--no-mdns", "--log-format", "json", "--log-level", "info")
    assert node.stop() == 0
    lines = [json.loads(line) for line in node.log().splitlines() if line.strip()]
    assert lines and all({"time", "level", "logger", "message"} <= set(x) for x in lines)
    messages = [x["message"] for x in lines]
    assert any(m.startswith("node ready") for m in messages)
    assert any("INSECURE MODE" in m for m in messages if m)
    assert "node stopped" in messages
