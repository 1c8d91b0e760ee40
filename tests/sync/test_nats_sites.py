"""Sites joined only through NATS (real nats-server processes, loopback only)."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from edgestate.store import Delete, Incr, Set, decode_state_vector
from tests.sync.conftest import Node, Nodes, eventually
from tests.sync.nats_sites import counter, nats_servers, ready, start_site, two_sites, value

pytestmark = pytest.mark.skipif(
    shutil.which("nats-server") is None, reason="nats-server not installed (scripts/bootstrap)"
)
DOC = "shared"


def everywhere(group: list[Node], check: object) -> bool:
    return all(check(n) for n in group)  # type: ignore[operator]


async def test_two_sites_converge_through_nats_only(nodes: Nodes, tmp_path: Path) -> None:
    async with nats_servers(nodes, tmp_path / "nats") as servers:
        urls = [servers[0].url]
        # Site A reaches NATS through one gateway; every node of site B is on NATS.
        site_a = await start_site(nodes, tmp_path, urls, gateway_only=True)
        site_b = await start_site(nodes, tmp_path, urls)
        everyone = site_a + site_b
        await ready(everyone)
        for i, node in enumerate(everyone):
            node.store.create_document(DOC)
            node.store.batch(
                [
                    Set(DOC, f"from-{i}", str(i).encode()),
                    Incr(DOC, "hits", i + 1),
                    Set(DOC, "gone", b"x"),
                ]
            )
        await eventually(
            lambda: all(
                value(n.store, DOC, f"from-{i}") == str(i).encode()
                for n in everyone
                for i in range(6)
            ),
            30,
        )
        await eventually(lambda: all(counter(n.store, DOC, "hits") == 21 for n in everyone), 30)
        # A delete on a LAN-only node of site A reaches every node of site B.
        site_a[2].store.batch([Delete(DOC, "gone")])
        await eventually(lambda: all(value(n.store, DOC, "gone") is None for n in everyone), 30)
        # No message from a non-member, nothing malformed.
        for node in everyone:
            if node.daemon.nats is not None:
                assert node.daemon.nats.stats.refused == 0
                assert node.daemon.nats.stats.malformed == 0


async def test_members_reached_through_nats_hold_the_gc_frontier(
    nodes: Nodes, tmp_path: Path
) -> None:
    async with nats_servers(nodes, tmp_path / "nats") as servers:
        a, b = await two_sites(nodes, tmp_path, servers[0].url)
        a.store.create_document(DOC)
        a.store.batch([Set(DOC, "k", b"1")])
        await eventually(lambda: value(b.store, DOC, "k") == b"1", 30)
        # Each node's gc round reports over NATS; no LAN link joins them.
        assert not a.daemon.connected() and not b.daemon.connected()

        async def reported() -> bool:
            await a.daemon.gc_round()
            await b.daemon.gc_round()
            await asyncio.sleep(0.05)
            return (
                b.store.replica_id in a.daemon.frontier.members
                and a.store.replica_id in b.daemon.frontier.members
            )

        for _ in range(100):
            if await reported():
                break
        assert b.store.replica_id in a.daemon.frontier.members
        assert a.store.replica_id in b.daemon.frontier.members
        # B reported holding A's write: that is what A's frontier may advance to.
        report = a.daemon.frontier.reports[b.store.replica_id]
        assert report[DOC].get(a.store.replica_id, 0) >= 1


async def test_member_reports_over_nats_are_sent_only_when_they_grew(
    nodes: Nodes, tmp_path: Path
) -> None:
    async with nats_servers(nodes, tmp_path / "nats") as servers:
        a, b = await two_sites(nodes, tmp_path, servers[0].url)
        assert a.daemon.nats is not None
        link = a.daemon.nats
        a.store.create_document(DOC)
        a.store.batch([Set(DOC, "k", b"1")])
        await eventually(lambda: value(b.store, DOC, "k") == b"1", 30)

        def a_as_b_sees_it() -> int:
            report = b.daemon.frontier.reports.get(a.store.replica_id, {})
            return int(report.get(DOC, {}).get(a.store.replica_id, -1))

        def own() -> int:
            return decode_state_vector(a.store.state_vector(DOC))[a.store.replica_id]

        for _ in range(100):
            await a.daemon.gc_round()
            await b.daemon.gc_round()
            await asyncio.sleep(0.05)
            if a_as_b_sees_it() == own() and b.store.replica_id in a.daemon.frontier.members:
                break
        assert a_as_b_sees_it() == own()
        # Rounds with nothing new publish nothing (the rounds' tasks get time to run).
        for _ in range(3):
            await a.daemon.gc_round()
        await asyncio.sleep(0.5)
        quiet = link.stats.reports_out
        for _ in range(3):
            await a.daemon.gc_round()
        await asyncio.sleep(0.5)
        assert link.stats.reports_out == quiet
        # A write grows a's report: the next round publishes it, and b learns it.
        seen = a_as_b_sees_it()
        a.store.batch([Set(DOC, "k", b"2")])
        await eventually(lambda: value(b.store, DOC, "k") == b"2", 30)
        for _ in range(100):
            await a.daemon.gc_round()
            await asyncio.sleep(0.05)
            if a_as_b_sees_it() > seen:
                break
        assert a_as_b_sees_it() > seen
        assert link.stats.reports_out > quiet


async def test_an_update_over_the_payload_limit_travels_in_parts(
    nodes: Nodes, tmp_path: Path
) -> None:
    async with nats_servers(nodes, tmp_path / "nats") as servers:
        a, b = await two_sites(nodes, tmp_path, servers[0].url)
        assert a.daemon.nats is not None and b.daemon.nats is not None
        limit = a.daemon.nats.max_payload
        # One commit, one update of ~2.5 MB: over the server's 1 MiB max_payload.
        a.store.create_document(DOC)
        a.store.batch([Set(DOC, f"big-{i}", bytes([i % 251]) * 1024) for i in range(2500)])
        await eventually(lambda: value(b.store, DOC, "big-2499") is not None, 30)
        assert all(value(b.store, DOC, f"big-{i}") == bytes([i % 251]) * 1024 for i in range(2500))
        # It went as several messages, each under the limit.
        # ~2.6 MB over a ~1 MiB limit: at least three parts.
        assert a.daemon.nats.stats.messages_out >= 3
        assert a.daemon.nats.stats.bytes_out / a.daemon.nats.stats.messages_out < limit
        assert b.daemon.nats.stats.malformed == 0
