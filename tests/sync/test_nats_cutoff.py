"""A site cut off from NATS without restarting: catch-up by diff after the reconnect."""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from pathlib import Path

import nats
import pytest

from edgestate.store import Set
from tests.sync.conftest import Node, Nodes, eventually
from tests.sync.nats_sites import (
    NATS_PASSWORD,
    NATS_USER,
    nats_servers,
    ready,
    start_site,
    two_sites,
    value,
)

pytestmark = pytest.mark.skipif(
    shutil.which("nats-server") is None, reason="nats-server not installed (scripts/bootstrap)"
)
DOC = "shared"


async def _caught_up(node: Node, seconds: float = 60) -> None:
    """Until ``node``'s consumer acked everything the stream holds."""
    assert node.daemon.nats is not None
    deadline = time.monotonic() + seconds
    while True:
        status = await node.daemon.nats.status()
        if status["acked_seq"] >= status["stream_last_seq"] > 0:
            return
        assert time.monotonic() < deadline, status
        await asyncio.sleep(0.05)


async def test_a_site_cut_off_catches_up_by_diff_after_the_link_returns(
    nodes: Nodes, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # On a failure, the catch-up's decision (INFO) is in the captured log.
    caplog.set_level(logging.INFO, logger="edgestate.sync")
    async with nats_servers(nodes, tmp_path / "nats", size=3, advertise=False) as servers:
        # Each site knows only its own server; the stream has a replica on each.
        (a,) = await start_site(nodes, tmp_path, [servers[0].url], size=1, replicas=3)
        (b,) = await start_site(nodes, tmp_path, [servers[1].url], size=1, replicas=3)
        await ready([a, b])
        a.store.create_document(DOC)
        a.store.batch([Set(DOC, "first", b"1")])
        await eventually(lambda: value(b.store, DOC, "first") == b"1", 60)
        await _caught_up(a)
        await _caught_up(b)
        assert a.daemon.nats is not None and b.daemon.nats is not None
        link = b.daemon.nats

        servers[1].kill()  # b keeps running; only its link is gone
        await eventually(lambda: not link.stats.connected, 30)
        # Writes that trickle: each its own message, ~7x its bytes if replayed.
        stream = a.store.changes()
        keys = [f"cut-{i}" for i in range(300)]
        for i, key in enumerate(keys):
            await a.store.abatch([Set(DOC, key, b"v" * 16)])
            await eventually(lambda i=i: a.daemon.nats.stats.messages_out >= i + 3, 30)  # type: ignore[misc]
        missed = 0
        while (event := stream.get_nowait()) is not None:
            missed += len(event.update)
        stream.close()
        await _caught_up(a)  # a, the node b will ask, applied the whole stream

        before = link.stats.bytes_in
        servers[1].start()
        await eventually(lambda: all(value(b.store, DOC, k) is not None for k in keys), 90)
        await _caught_up(b)
        assert link.stats.reconnects >= 1
        assert link.stats.catchups_by_diff == 1, link.stats.snapshot()
        received = link.stats.bytes_in - before
        assert received <= 1.2 * missed, (received, missed)
        # The recreated consumer carries on with what comes next.
        a.store.batch([Set(DOC, "after", b"1")])
        await eventually(lambda: value(b.store, DOC, "after") == b"1", 60)


async def test_a_consumer_deleted_under_the_link_is_made_again_from_its_ack_floor(
    nodes: Nodes, tmp_path: Path
) -> None:
    async with nats_servers(nodes, tmp_path / "nats") as servers:
        a, b = await two_sites(nodes, tmp_path, servers[0].url)
        a.store.create_document(DOC)
        keys = [f"k-{i}" for i in range(50)]
        for key in keys:
            await a.store.abatch([Set(DOC, key, b"v")])
        await eventually(lambda: all(value(b.store, DOC, k) == b"v" for k in keys), 60)
        await _caught_up(b)
        link = b.daemon.nats
        assert link is not None
        floor = link.stats.acked_seq

        # An operator (or a server that lost it) removes b's consumer.
        nc = await nats.connect(servers[0].url, user=NATS_USER, password=NATS_PASSWORD)
        try:
            js = nc.jetstream()
            await js.delete_consumer(link.subjects.stream, link.inbound.durable)
            a.store.batch([Set(DOC, "after", b"1")])
            await eventually(lambda: value(b.store, DOC, "after") == b"1", 45)
            info = await js.consumer_info(link.subjects.stream, link.inbound.durable)
        finally:
            await nc.close()
        assert link.stats.consumers_lost == 1, link.stats.snapshot()
        # Made again where b's applies reached: nothing before it replayed.
        assert info.config.opt_start_seq == floor + 1, info.config
        assert link.stats.messages_in - len(keys) <= 3, link.stats.snapshot()
