"""Module rollout between two sites of three node processes, joined only through NATS.

Site A: three nodes, each with its own NATS link, LAN-linked to a1. Site B: a
gateway (b1) on NATS and two nodes (b2, b3) that have only their LAN link to it.
No LAN link crosses the sites: a module deployed at a1 must reach b3 through
NATS and b1's relay, and the state its invocations write must come back.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from edgestate.devkit import example_bundle, make_publisher
from edgestate.devkit.nats_server import nats_cluster
from tests.node.api_check import call
from tests.node.conftest import NodeProcess, eventually, start_node
from tests.node.test_modules_e2e import BUILD, deploy, invoke
from tests.node.test_nats_sites import nats_toml

pytestmark = pytest.mark.skipif(
    shutil.which("nats-server") is None, reason="nats-server not installed (scripts/bootstrap)"
)


def _active(node: NodeProcess, name: str) -> bool:
    rows = call(node.api, "GET", "/v1/admin/modules", token=node.token).json()
    return any(m["name"] == name and m["state"] == "active" for m in rows["modules"])


def _incr(node: NodeProcess, key: str) -> None:
    reply = invoke(node, "counter", key.encode())
    assert reply.status == 200, reply.body


def _counter(node: NodeProcess, key: str) -> int | None:
    """The counter ``key`` of the module's document, read without invoking."""
    reply = call(node.api, "GET", f"/v1/admin/docs/counters/keys/{key}", token=node.token)
    if reply.status == 404:
        return None
    assert reply.status == 200, reply.body
    found: int | None = reply.json()["counter"]
    return found


def test_a_module_deployed_at_one_site_is_active_on_all_six_and_its_state_follows(
    tmp_path: Path,
) -> None:
    publisher = make_publisher(tmp_path / "publisher")
    with nats_cluster(tmp_path / "nats") as servers:
        url = servers[0].url
        on_nats = nats_toml(tmp_path / "a.toml", url, gateway=False)
        gateway = nats_toml(tmp_path / "b.toml", url, gateway=True)
        started: list[NodeProcess] = []

        def node(name: str, *extra: str, config: Path | None = None) -> NodeProcess:
            data = tmp_path / name
            data.mkdir()
            shutil.copy(publisher.policy_path, data / "trust-policy.json")
            started.append(start_node(data, "--no-mdns", *extra, config=config))
            return started[-1]

        try:
            a1 = node("a1", config=on_nats)
            a_lan = ("--peer", f"127.0.0.1:{a1.sync_port}")
            site_a = [a1, node("a2", *a_lan, config=on_nats), node("a3", *a_lan, config=on_nats)]
            b1 = node("b1", config=gateway)
            b_lan = ("--peer", f"127.0.0.1:{b1.sync_port}")
            site_b = [b1, node("b2", *b_lan), node("b3", *b_lan)]

            reply = deploy(a1, example_bundle("counter", publisher, BUILD))
            assert reply.status == 201, reply.body
            for n in site_a + site_b:
                eventually(lambda n=n: _active(n, "counter"), 60, f"counter active on {n.api}")  # type: ignore[misc]

            # Invocations at both sites, each on a key of its own (b2 and b3 have only
            # their LAN link to the gateway): every node ends with both counts.
            for n in site_b:
                _incr(n, "site-b")
            for n in site_a:
                _incr(n, "site-a")
            for n in site_a + site_b:
                for key in ("site-a", "site-b"):
                    eventually(
                        lambda n=n, key=key: _counter(n, key) == 3,  # type: ignore[misc]
                        60,
                        f"{key} = 3 on {n.api}",
                    )
        finally:
            for n in started:
                assert n.stop() == 0, n.log()
