"""Two real daemons whose connection logic runs over the in-memory Channel pair:
the transport seam carries everything (hello, catch-up, gossip, the duplicate
rule, refusal, shutdown) without a socket between them."""

from __future__ import annotations

import asyncio

import pytest

from edgestate.errors import ConnectionDeclinedError, PeerGoneError
from edgestate.store import Set
from edgestate.sync import frames, memory_channel_pair
from edgestate.sync.channel import CloseCode
from edgestate.sync.peers import PeerState
from tests.sync.conftest import Nodes, eventually, memory_link

pytestmark = pytest.mark.timeout(30)

DOC = "over-memory"


async def test_two_daemons_sync_over_the_in_memory_channel(nodes: Nodes) -> None:
    a = await nodes.start()
    b = await nodes.start()
    a.store.create_document(DOC)
    a.store.batch([Set(DOC, "before", b"1")])  # caught up at connect
    dialed, accepted = memory_link(a, b)
    async with asyncio.timeout(10):
        await a.daemon.wait_connected(1)
        await b.daemon.wait_connected(1)
    assert a.daemon.connected() == [b.daemon.node_id]
    await eventually(lambda: b.store.has_document(DOC) and b.store.get(DOC, "before") == b"1")
    b.store.batch([Set(DOC, "from-b", b"2")])  # pushed, the other way
    await eventually(lambda: a.store.get(DOC, "from-b") == b"2")
    (status,) = b.daemon.peers()
    assert status.state is PeerState.CONNECTED and status.source == "inbound"
    assert status.node_id == a.daemon.node_id and status.bytes_in > 0
    assert a.daemon.stats.frames_in > 0 and b.daemon.stats.frames_in > 0
    # One side shutting down ends the link on both; close() leaves nothing running.
    await nodes.stop(a)
    assert dialed.done()
    async with asyncio.timeout(5):
        assert await accepted is True
    assert b.daemon.connected() == []
    (status,) = b.daemon.peers()
    assert status.state is PeerState.DISCONNECTED


async def test_of_two_links_between_a_pair_both_keep_the_same_one(nodes: Nodes) -> None:
    a = await nodes.start()
    b = await nodes.start()
    first = memory_link(a, b)
    async with asyncio.timeout(10):
        await a.daemon.wait_connected(1)
        await b.daemon.wait_connected(1)
    second = memory_link(b, a)  # the other way round, while the first is up
    # The one dialed by the smaller node id stays, on both sides.
    keep, drop = (first, second) if a.daemon.node_id < b.daemon.node_id else (second, first)
    async with asyncio.timeout(10):
        outcomes = await asyncio.gather(*drop, return_exceptions=True)
    if drop is second:  # refused by both sides at admission
        assert all(isinstance(o, ConnectionDeclinedError) for o in outcomes), outcomes
    else:  # replaced on both sides: it was established, then closed as a duplicate
        assert outcomes == [True, True]
    assert not any(t.done() for t in keep)
    assert a.daemon.connected() == [b.daemon.node_id]
    assert b.daemon.connected() == [a.daemon.node_id]
    a.store.create_document(DOC)
    a.store.batch([Set(DOC, "k", b"v")])
    await eventually(lambda: b.store.has_document(DOC) and b.store.get(DOC, "k") == b"v")


async def test_a_refusal_over_the_in_memory_channel_carries_its_reason(nodes: Nodes) -> None:
    a = await nodes.start()
    ours, theirs = memory_channel_pair()
    served = asyncio.ensure_future(a.daemon.run_channel(theirs, False))
    stranger = frames.Hello(frames.PROTOCOL_VERSIONS, "stranger", "another-cluster")
    await ours.send(frames.encode(stranger))
    async with asyncio.timeout(5):
        hello = frames.decode(await ours.receive(), max_bytes=1 << 20, max_docs=10)
        assert isinstance(hello, frames.Hello) and hello.node == a.daemon.node_id
        assert await served is False
        with pytest.raises(PeerGoneError):
            await ours.receive()
    assert ours.close_code == CloseCode.POLICY_VIOLATION
    assert ours.close_reason is not None and "cluster" in ours.close_reason
    assert a.daemon.stats.refused == 1 and a.daemon.connected() == []
