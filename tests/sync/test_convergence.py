"""Nodes on 127.0.0.1 converge: meshes, chains, restarts, partitions, local-only docs."""

from __future__ import annotations

import asyncio
import collections
import random

import pytest

from edgestate.store import Incr, Set
from edgestate.sync.config import Limits
from edgestate.sync.peers import PeerState
from tests.sync.conftest import Node, Nodes, eventually, exchanged, memory_link, settled

pytestmark = pytest.mark.timeout(60)

DOC = "shared"


def snapshot(node: Node, doc: str = DOC) -> dict[str, bytes]:
    if not node.store.has_document(doc):
        return {}
    items: dict[str, bytes] = {}
    cursor = None
    while True:
        page = node.store.scan(doc, cursor=cursor, limit=1000)
        items.update(page.items)
        if page.cursor is None:
            return items
        cursor = page.cursor


def all_equal(group: list[Node], doc: str = DOC) -> bool:
    first = snapshot(group[0], doc)
    return bool(first) and all(snapshot(n, doc) == first for n in group[1:])


async def mesh(nodes: Nodes, count: int, **overrides: object) -> list[Node]:
    """``count`` nodes, each dialing every earlier one: a full mesh."""
    started: list[Node] = []
    for _ in range(count):
        started.append(await nodes.start(list(started), **overrides))
    async with asyncio.timeout(10):
        for node in started:
            await node.daemon.wait_connected(count - 1)
    return started


async def write_concurrently(group: list[Node], rounds: int) -> None:
    async def writer(i: int, node: Node) -> None:
        rng = random.Random(i)
        for r in range(rounds):
            ops: list[Set | Incr] = [
                Incr(DOC, "hits", 1),
                Set(DOC, f"n{i}-{r}", bytes([i, r % 256])),
            ]
            if rng.random() < 0.3:
                ops.append(Set(DOC, "contended", f"{i}:{r}".encode()))
            await node.store.abatch(ops)

    for node in group:
        node.store.create_document(DOC)
    await asyncio.gather(*(writer(i, n) for i, n in enumerate(group)))


@pytest.mark.parametrize("count", [3, 5])
async def test_a_full_mesh_converges_after_concurrent_writes(nodes: Nodes, count: int) -> None:
    group = await mesh(nodes, count)
    rounds = 40
    await write_concurrently(group, rounds)
    await eventually(lambda: all_equal(group), seconds=20)
    for node in group:
        # Concurrent increments on different nodes all count.
        assert node.store.get_counter(DOC, "hits") == count * rounds
        assert len(snapshot(node)) == count * rounds + 2


async def test_a_chain_converges_through_relays(nodes: Nodes) -> None:
    a = await nodes.start()
    b = await nodes.start([a])
    c = await nodes.start([b])
    d = await nodes.start([c])  # a - b - c - d: a and d never talk directly
    async with asyncio.timeout(10):
        await b.daemon.wait_connected(2)
        await c.daemon.wait_connected(2)
    await write_concurrently([a, d], rounds=30)
    await eventually(lambda: all_equal([a, b, c, d]))
    assert d.store.get_counter(DOC, "hits") == 60
    assert a.daemon.connected() == [b.daemon.node_id]


async def test_relaying_stops_when_an_update_changes_nothing(nodes: Nodes) -> None:
    # Over in-memory links that count what each node pushes, per document.
    group = [await nodes.start() for _ in range(3)]
    pushed: collections.Counter[str] = collections.Counter()
    for i, j in ((1, 0), (2, 0), (2, 1)):
        memory_link(group[i], group[j], pushed)
    async with asyncio.timeout(10):
        for node in group:
            await node.daemon.wait_connected(2)
    group[0].store.create_document(DOC)
    group[0].store.batch([Set(DOC, "k", b"v")])
    await eventually(lambda: all_equal(group))
    await settled(group)  # any echo is on the wire by now: there must be none
    # The creator sends to two peers; each relays once to the third, whose apply
    # changes nothing and is therefore not relayed further.
    assert pushed[DOC] <= 4, pushed
    # Each push item was one update (nothing merged), so that bound is in updates.
    assert sum(n.daemon.stats.updates_pushed for n in group) == sum(pushed.values())
    before = pushed[DOC]
    await settled(group)
    assert pushed[DOC] == before
    assert sum(n.daemon.stats.updates_pushed for n in group) == sum(pushed.values())


async def test_a_restarted_node_catches_up_with_only_the_missing_updates(nodes: Nodes) -> None:
    a = await nodes.start()
    b = await nodes.start([a])
    a.store.create_document(DOC)
    a.store.batch([Set(DOC, f"old{i}", b"x" * 100) for i in range(2000)])
    await eventually(lambda: all_equal([a, b]))
    name, path = b.name, b.path
    await nodes.stop(b)
    sv_before = a.store.state_vector(DOC)
    for i in range(100):
        a.store.batch([Set(DOC, f"new{i}", b"y" * 100)])
    missing = len(a.store.diff(DOC, sv_before))
    whole = len(a.store.diff(DOC, None))
    b = await nodes.start([a], name=name, certs=nodes.cluster.root / name, path=path)
    await eventually(lambda: all_equal([a, b]))
    received = b.daemon.stats.bytes_in
    # Hello and state vectors cost a few hundred bytes; the rest is the diff.
    assert received < 1.2 * missing + 1024, (received, missing)
    assert received < whole / 10
    # The peer table on a shows b caught up from how far behind it was.
    (status,) = a.daemon.peers()
    assert status.state is PeerState.CONNECTED and status.last_sync is not None
    assert status.lag >= 100  # as of the handshake: b lacked the 100 new writes
    await a.daemon.anti_entropy_now()
    await eventually(lambda: a.daemon.peers()[0].lag == 0)


async def test_a_partition_heals(nodes: Nodes) -> None:
    a = await nodes.start()
    b = await nodes.start([a])
    c = await nodes.start()
    d = await nodes.start([c])
    async with asyncio.timeout(10):
        await b.daemon.wait_connected(1)
        await d.daemon.wait_connected(1)
    await write_concurrently([a, c], rounds=20)
    await write_concurrently([b, d], rounds=20)
    await eventually(lambda: all_equal([a, b]) and all_equal([c, d]))
    assert snapshot(a) != snapshot(c)
    b.daemon.add_peer(c.address)  # the link comes back
    await eventually(lambda: all_equal([a, b, c, d]))
    assert a.store.get_counter(DOC, "hits") == 80


async def test_local_only_documents_never_leave_the_node(nodes: Nodes) -> None:
    a = await nodes.start(local_only=frozenset({"secret"}))
    b = await nodes.start([a])
    await b.daemon.wait_connected(1)
    for doc in ("secret", DOC):
        a.store.create_document(doc)
        a.store.batch([Set(doc, "k", b"v")])
    await eventually(lambda: all_equal([a, b]))
    await exchanged(a, b)
    await exchanged(b, a)
    await settled([a, b])  # whatever the exchanges sent has landed
    assert not b.store.has_document("secret")
    assert "secret" not in await a.daemon.state_vectors()


async def test_a_peer_that_falls_behind_is_resynced_from_state_vectors(nodes: Nodes) -> None:
    a = await nodes.start(limits=Limits(peer_queue=8))
    b = await nodes.start([a])
    # Both ends: until a has registered the link, its commits have nobody to be
    # queued for and reach b in the handshake's diff instead, overflowing nothing.
    async with asyncio.timeout(10):
        await b.daemon.wait_connected(1)
        await a.daemon.wait_connected(1)
    a.store.create_document(DOC)
    # 300 separate commits while a's event loop is blocked (a stand-in for a
    # consumer that fell behind): the bounded queues overflow, are dropped, and b
    # is healed from state vectors instead of by unbounded buffering.
    for i in range(300):
        a.store.batch([Set(DOC, f"k{i}", b"v")])
    await eventually(lambda: all_equal([a, b]) and len(snapshot(b)) == 300)
    assert a.daemon.stats.resyncs >= 1
    assert a.daemon.stats.updates_pushed < 300


async def test_two_nodes_dialing_each_other_keep_one_connection(nodes: Nodes) -> None:
    a = await nodes.start()
    b = await nodes.start([a])
    a.daemon.add_peer(b.address)
    async with asyncio.timeout(10):
        await a.daemon.wait_connected(1)
        await b.daemon.wait_connected(1)

    def one_link() -> bool:
        """Each side: one connection, one peer record, the dialable one, connected."""
        for node, other in ((a, b), (b, a)):
            status = node.daemon.peers()
            if node.daemon.connected() != [other.daemon.node_id] or len(status) != 1:
                return False
            if status[0].state is not PeerState.CONNECTED or status[0].address != other.address:
                return False
        return True

    # Both dialers settled on the same connection (the other one was refused
    # or replaced on both sides, and its record merged into this one).
    await eventually(one_link)
    a.store.create_document(DOC)
    a.store.batch([Set(DOC, "k", b"v")])
    await eventually(lambda: all_equal([a, b]))
    await settled([a, b])
    assert one_link()


async def test_a_lost_peer_is_redialed_when_it_comes_back(nodes: Nodes) -> None:
    a = await nodes.start()
    b = await nodes.start([a])
    await b.daemon.wait_connected(1)
    name, path, port = a.name, a.path, a.daemon.port
    await nodes.stop(a)
    await eventually(lambda: b.daemon.connected() == [])
    # b keeps dialing while a is down (and fails) before a comes back.
    await eventually(lambda: b.daemon.peers()[0].failures >= 1)
    b.store.create_document(DOC)
    b.store.batch([Set(DOC, "while-away", b"1")])
    # Back on the same address: b's dialer, in backoff, finds it by itself.
    a = await nodes.start(name=name, certs=nodes.cluster.root / name, path=path, port=port)
    async with asyncio.timeout(10):
        await b.daemon.wait_connected(1)
    await eventually(lambda: all_equal([a, b]))
    (status,) = b.daemon.peers()
    assert status.failures >= 1 and status.state is PeerState.CONNECTED
