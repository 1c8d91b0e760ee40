"""Discovery: backoff, static peers, and mDNS inside a network namespace of our own."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edgestate.sync.config import parse_address
from edgestate.sync.discovery import Found, StaticDiscovery
from edgestate.sync.peers import Backoff, lag
from tests.sync.conftest import Cluster

REPO = Path(__file__).resolve().parents[2]


def test_backoff_grows_exponentially_with_jitter_up_to_the_cap() -> None:
    backoff = Backoff(0.1, 1.0)
    delays = [backoff.next_delay() for _ in range(8)]
    assert 0.05 <= delays[0] <= 0.1
    assert 0.1 <= delays[1] <= 0.2
    assert all(0.5 <= d <= 1.0 for d in delays[4:])
    backoff.reset()
    assert backoff.next_delay() <= 0.1


def test_addresses_parse_with_a_default_port() -> None:
    assert parse_address("10.1.2.3:9000") == ("10.1.2.3", 9000)
    assert parse_address("node.lan") == ("node.lan", 7475)
    assert parse_address("[::1]:80") == ("::1", 80)


def test_lag_counts_operations_the_remote_lacks() -> None:
    from pycrdt import Doc, Map

    doc: Doc = Doc()
    root = doc.get("root", type=Map)
    empty = doc.get_state()
    for i in range(5):
        root[f"k{i}"] = b"v"
    assert lag(doc.get_state(), empty) == 5
    assert lag(doc.get_state(), doc.get_state()) == 0


async def test_static_discovery_reports_every_configured_peer() -> None:
    found: list[Found] = []
    source = StaticDiscovery(("127.0.0.1:9001", "127.0.0.1:9002"))
    await source.start(found.append, found.append)
    await source.aclose()
    assert [(f.host, f.port, f.source) for f in found] == [
        ("127.0.0.1", 9001, "static"),
        ("127.0.0.1", 9002, "static"),
    ]


def _netns_works() -> str | None:
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return "unshare or ip is not installed"
    probe = subprocess.run(
        ["unshare", "-n", "sh", "-c", "ip link set lo up && ip link set lo multicast on"],
        capture_output=True,
        text=True,
        timeout=10,
    )
    if probe.returncode != 0:
        return f"cannot make a network namespace here: {probe.stderr.strip()}"
    return None


@pytest.mark.timeout(60)
def test_mdns_finds_a_peer_inside_a_private_network_namespace(
    cluster: Cluster, tmp_path: Path
) -> None:
    reason = _netns_works()
    if reason is not None:
        pytest.skip(f"mDNS test needs its own network namespace: {reason}")
    # The namespace has only its own loopback: nothing can leave the machine.
    script = (
        "ip link set lo up && ip link set lo multicast on && "
        f'exec "{sys.executable}" -m tests.sync.mdns_pair "$0" "$1"'
    )
    proc = subprocess.run(
        ["unshare", "-n", "sh", "-c", script, str(tmp_path), str(cluster.ca_dir)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=50,
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "PYTHONPATH": str(REPO)},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    if not result["multicast"]:
        pytest.skip("multicast is unavailable on loopback in this namespace")
    assert "mdns" in result["sources"]  # at least the side that dialed found it by mDNS
    assert result["peer_ids"] == result["expected_ids"]  # each sees the other, no one else
    assert result["value"] == "found by mdns"
