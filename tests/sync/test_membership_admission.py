"""Who becomes a cluster member, whose forget list counts, and who may create
documents (hardening item 9): a peer is a member only after a valid state
exchange, members that never held anything expire, a remote forget list counts
only from an authenticated member, and the document-creation limit holds per
network source whatever node id a peer says hello with."""

from __future__ import annotations

import asyncio
import contextlib
import itertools

import aiohttp
import pytest
from pycrdt import Doc, Map

from edgestate.store import Set
from edgestate.sync import frames
from edgestate.sync.config import Limits
from edgestate.sync.frames import Hello, Push, Reports, StateVectors
from edgestate.sync.membership import legacy_member_id
from tests.sync.conftest import Cluster, Node, Nodes, RawPeer, eventually

pytestmark = pytest.mark.timeout(60)

DOC = "d"
GC = dict(gc_round_s=3600.0)  # rounds run by hand here
INSECURE = dict(tls=None, insecure=True, cluster_id="dev")
_ids = itertools.count()


def one_write(key: str) -> bytes:
    doc: Doc = Doc()
    doc.get("root", type=Map)[key] = b"x"
    update: bytes = doc.get_update()
    return update


class InsecurePeer:
    """A hand-driven peer of an insecure-mode node: any node id it likes."""

    def __init__(self) -> None:
        self.node_id = f"fuzz-{next(_ids)}"
        self.session: aiohttp.ClientSession | None = None
        self.ws: aiohttp.ClientWebSocketResponse | None = None

    async def connect(self, node: Node) -> None:
        self.session = aiohttp.ClientSession()
        self.ws = await self.session.ws_connect(f"ws://{node.address}/sync")
        await self.send(Hello(frames.PROTOCOL_VERSIONS, self.node_id, "dev"))

    async def send(self, frame: frames.Frame) -> None:
        assert self.ws is not None
        await self.ws.send_bytes(frames.encode(frame))

    async def wait_closed(self) -> tuple[int | None, str]:
        assert self.ws is not None
        while True:
            msg = await self.ws.receive()
            if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                return self.ws.close_code, str(msg.extra or "")

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self.session is not None:
            await self.session.close()


async def processed(peer: RawPeer | InsecurePeer) -> tuple[int | None, str]:
    """Make the node close ``peer`` with a bad frame: everything sent before it
    was dispatched by then (one connection's frames are handled in order)."""
    with contextlib.suppress(ConnectionError):  # it may have closed us already
        await peer.send(frames.Synced())
        await peer.send(Hello((1,), "again", "again"))  # a second hello: refused
    async with asyncio.timeout(10):
        return await peer.wait_closed()


async def test_reports_before_a_state_exchange_make_no_member(
    nodes: Nodes, cluster: Cluster
) -> None:
    a = await nodes.start(**GC)
    a.store.create_document(DOC)
    garbage = RawPeer(cluster)
    try:
        await garbage.connect(a)
        await garbage.send(Reports({999: {DOC: {1: 1}}}))
        code, _ = await processed(garbage)
    finally:
        await garbage.close()
    assert code == 1002
    assert 999 not in a.daemon.frontier.members
    # An honest peer's reports (sent before its state vectors) count once those come.
    honest = RawPeer(cluster)
    try:
        await honest.connect(a)
        await honest.send(Reports({1001: {DOC: {1: 1}}}))
        await honest.send(StateVectors({}, reply=False))
        await eventually(lambda: 1001 in a.daemon.frontier.members)
    finally:
        await honest.close()


async def test_members_that_never_held_anything_expire(nodes: Nodes, cluster: Cluster) -> None:
    a = await nodes.start(forget_after_s=0.3, **GC)
    a.store.create_document(DOC)
    await a.store.abatch([Set(DOC, "k", b"v")])
    empty, holder = RawPeer(cluster), RawPeer(cluster)
    try:
        for peer, sv in ((empty, b"\x00"), (holder, a.store.state_vector(DOC))):
            await peer.connect(a, hello=False)
            await peer.send(Hello((1,), peer.identity.node_id, peer.identity.cluster_id))
            await peer.send(StateVectors({DOC: sv}, reply=False))
        stand_ins = [legacy_member_id(p.identity.node_id) for p in (empty, holder)]
        await eventually(lambda: all(m in a.daemon.frontier.members for m in stand_ins))
        await asyncio.sleep(0.4)  # past forget_after_s
        await a.daemon.gc_round()
        members = a.daemon.frontier.members
        assert stand_ins[0] not in members  # reported nothing but an empty vector
        assert stand_ins[1] in members  # holds the document: waited for
        assert stand_ins[0] not in a.daemon.frontier.forgotten  # may come back
    finally:
        await empty.close()
        await holder.close()


async def test_a_forget_list_counts_only_from_authenticated_members(nodes: Nodes) -> None:
    a = await nodes.start(**INSECURE, **GC)
    a.store.create_document(DOC)
    a.daemon.frontier.merge({4242: {DOC: {1: 1}}})
    peer = InsecurePeer()
    try:
        await peer.connect(a)
        await peer.send(StateVectors({}, reply=False))
        await peer.send(Reports({}, forgotten=(4242,)))
        code, _ = await processed(peer)
    finally:
        await peer.close()
    assert code == 1002
    assert 4242 in a.daemon.frontier.members
    assert 4242 not in a.daemon.frontier.forgotten


async def test_the_document_creation_limit_holds_per_source(nodes: Nodes) -> None:
    a = await nodes.start(**INSECURE, limits=Limits(max_new_documents=5), **GC)
    closes = []
    for round_ in range(3):  # a new node id per connection, three new documents each
        peer = InsecurePeer()
        try:
            await peer.connect(a)
            docs = [f"spam{round_}-{i}" for i in range(3)]
            await peer.send(Push(tuple((d, one_write("k")) for d in docs)))
            closes.append(await processed(peer))
        finally:
            await peer.close()
    assert len(a.store.documents()) <= 5
    code, reason = closes[-1]
    assert code == 1002 and "rate_limited" in reason and "127.0.0.1" in reason
    assert a.daemon.stats.protocol_errors["rate_limited"] >= 1
