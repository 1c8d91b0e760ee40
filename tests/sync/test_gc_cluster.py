"""Garbage collection across real nodes: frontiers from gossiped reports, convergence,
and a forgotten member refused as stale while the rest keep serving."""

from __future__ import annotations

from dataclasses import replace

import pytest
from pycrdt import Doc, Map

from edgestate.errors import StaleReplicaError
from edgestate.store import GcMode, GcState, Ranges, Set, decode_state_vector
from edgestate.sync import frames
from edgestate.sync.frames import Reports, StateVectors
from edgestate.sync.membership import chunk_reports, collected_frames, legacy_member_id
from tests.sync.conftest import FAST_STORE, Cluster, Node, Nodes, RawPeer, eventually

DOC = "d"
# Fast rounds for tests; the grace period still spans several rounds.
GC = dict(gc_round_s=0.05, gc_grace_s=0.3)


def values(node: Node) -> dict[str, bytes] | None:
    if not node.store.has_document(DOC):
        return None
    return dict(node.store.scan(DOC, limit=1000).items)


def converged(nodes: list[Node]) -> bool:
    first = values(nodes[0])
    return all(values(n) == first for n in nodes[1:])


def overwrite(node: Node, tag: str, rounds: int = 30, keys: int = 10) -> None:
    for r in range(rounds):
        node.store.batch([Set(DOC, f"k{k}", f"{tag}{r}".encode()) for k in range(keys)])


def frontier_covers_all(node: Node) -> bool:
    """True once the node's frontier covers its whole state vector (all stable)."""
    status = node.store.gc_status(DOC)
    have = decode_state_vector(node.store.state_vector(DOC))
    return status.frontier is not None and all(
        status.frontier.get(c, 0) >= k for c, k in have.items()
    )


@pytest.mark.timeout(60)
async def test_nodes_collect_what_every_member_has_and_still_agree(nodes: Nodes) -> None:
    a = await nodes.start(**GC)
    b = await nodes.start([a], **GC)
    c = await nodes.start([a, b], **GC)
    for node in (a, b, c):
        node.store.create_document(DOC)
    for node, tag in ((a, "a"), (b, "b"), (c, "c")):
        overwrite(node, tag)
    await eventually(lambda: converged([a, b, c]))
    # Every member's reports reach everyone; frontiers then cover all writes.
    await eventually(lambda: all(frontier_covers_all(n) for n in (a, b, c)), 20)
    for node in (a, b, c):
        assert node.daemon.frontier.members == sorted(n.store.replica_id for n in (a, b, c))
        node.store.compact(DOC)
        assert node.store.gc_status(DOC).collected_items > 0
    assert converged([a, b, c])
    # Collected nodes go on replicating with each other as before.
    overwrite(b, "again", rounds=3)
    await eventually(lambda: converged([a, b, c]))
    a.store.set(DOC, "k0", b"last word")  # causally after b's: it must win everywhere
    await eventually(lambda: converged([a, b, c]))
    assert (values(c) or {})["k0"] == b"last word"
    assert not any(n.daemon.stats.protocol_errors for n in (a, b, c))


@pytest.mark.timeout(60)
async def test_a_member_that_is_down_holds_collection_back(nodes: Nodes) -> None:
    a = await nodes.start(**GC)
    b = await nodes.start([a], **GC)
    a.store.create_document(DOC)
    overwrite(a, "a")
    await eventually(lambda: converged([a, b]))
    await eventually(lambda: frontier_covers_all(a), 20)
    await nodes.stop(b)
    overwrite(a, "later")
    # Rounds keep running, but b never reports the later writes: they stay.
    before = a.store.gc_status(DOC).frontier
    for _ in range(10):
        await a.daemon.gc_round()
    assert a.store.gc_status(DOC).frontier == before
    assert not frontier_covers_all(a)


@pytest.mark.timeout(60)
async def test_a_forgotten_member_comes_back_stale_and_is_refused(nodes: Nodes) -> None:
    a = await nodes.start(**GC)
    b = await nodes.start([a], **GC)
    a.store.create_document(DOC)
    overwrite(a, "a")
    await eventually(lambda: converged([a, b]))
    name, path, replica = b.name, b.path, b.store.replica_id
    await eventually(lambda: replica in a.daemon.frontier.members)
    await nodes.stop(b)
    # b is gone for good, says the operator; a's frontier no longer waits for it.
    assert await a.daemon.forget_member(replica)
    overwrite(a, "after")
    await eventually(lambda: frontier_covers_all(a), 20)
    a.store.compact(DOC)
    assert a.store.gc_status(DOC).collected_items > 0
    expected = values(a)
    # b returns with part of the collected history: a refuses it, by name.
    b = await nodes.start([a], name=name, certs=nodes.cluster.root / name, path=path, **GC)
    await eventually(lambda: a.daemon.stats.protocol_errors["stale_replica"] > 0)
    assert values(a) == expected  # nothing of a's was touched
    a.store.set(DOC, "k0", b"a keeps serving")
    assert a.store.get(DOC, "k0") == b"a keeps serving"
    # And a fresh node still joins and gets everything.
    c = await nodes.start([a], **GC)
    await eventually(lambda: values(c) == values(a))


@pytest.mark.timeout(60)
async def test_a_version_1_peer_is_reported_for_and_holds_collection_back(
    nodes: Nodes, cluster: Cluster
) -> None:
    a = await nodes.start(**GC)
    a.store.create_document(DOC)
    overwrite(a, "a")
    old = RawPeer(cluster)  # speaks version 1 only: never sends reports
    try:
        await old.connect(a, hello=False)
        await old.send(frames.Hello((1,), old.identity.node_id, old.identity.cluster_id))
        await old.send(StateVectors({DOC: b"\x00"}, reply=False))  # holds nothing of it
        member = legacy_member_id(old.identity.node_id)
        await eventually(lambda: member in a.daemon.frontier.members)
        for _ in range(10):
            await a.daemon.gc_round()
        # Its (empty) state vector keeps the frontier at nothing: nothing collected.
        a.store.compact(DOC)
        assert a.store.gc_status(DOC).collected_items == 0
        # A reports frame is not version 1: refused by name.
        await old.send(Reports({}))
        code, reason = await old.wait_closed()
        assert code == 1002 and "reports frame in protocol version 1" in reason
    finally:
        await old.close()


async def test_local_only_documents_are_not_reported_to_peers(nodes: Nodes) -> None:
    a = await nodes.start(local_only=frozenset({"secret"}), **GC)
    for doc in (DOC, "secret"):
        a.store.create_document(doc)
    await a.daemon.gc_round()
    assert set(a.daemon.frontier.reports[a.store.replica_id]) == {DOC, "secret"}
    sent = {d for chunk in a.daemon.reports_to_send() for d in chunk[a.store.replica_id]}
    assert sent == {DOC}


@pytest.mark.timeout(60)
async def test_a_forget_on_one_node_holds_cluster_wide(nodes: Nodes) -> None:
    a = await nodes.start(**GC)
    b = await nodes.start([a], **GC)
    c = await nodes.start([a, b], **GC)
    for node in (a, b, c):
        node.store.create_document(DOC)
    overwrite(c, "c", rounds=2)
    gone = c.store.replica_id
    # c's writes everywhere before it goes (what this test is about is the forget,
    # not a relay: c's pushes could still be on their way to b when it stopped, and
    # tests run no periodic anti-entropy to bring them; seen in CI).
    wrote = decode_state_vector(c.store.state_vector(DOC))[gone]
    await eventually(
        lambda: all(
            decode_state_vector(n.store.state_vector(DOC)).get(gone) == wrote for n in (a, b)
        )
    )
    await eventually(lambda: all(gone in n.daemon.frontier.members for n in (a, b)))
    await nodes.stop(c)
    assert await a.daemon.forget_member(gone)
    # b hears it in a's next reports and stops waiting for c too.
    await eventually(lambda: gone in b.daemon.frontier.forgotten)
    assert gone not in b.daemon.frontier.members
    overwrite(b, "b")
    await eventually(lambda: frontier_covers_all(b), 20)


@pytest.mark.timeout(60)
async def test_every_node_refuses_what_a_collector_refuses(nodes: Nodes) -> None:
    """Found in review: only the collector knew its ranges, so a member that kept
    the full history took (and relayed) a stale write the collector refuses, and a
    node bootstrapped from collected history took it and lost the key everywhere."""
    a = await nodes.start(**GC)
    full = await nodes.start(
        [a], store_config=replace(FAST_STORE, gc=GcMode.OFF), **GC
    )  # never collects: keeps every tombstone
    for node in (a, full):
        node.store.create_document(DOC)
    overwrite(a, "a")
    await eventually(lambda: converged([a, full]))
    offline = Doc(client_id=4242)  # a Yjs client that then goes offline
    offline_root = offline.get("root", type=Map)
    offline.apply_update(a.store.diff(DOC))
    overwrite(a, "later")
    await eventually(lambda: converged([a, full]) and frontier_covers_all(a), 20)
    a.store.compact(DOC)
    assert a.store.gc_status(DOC).collected_items > 0
    offline_root["k0"] = b"written on an old view"
    stale = offline.get_update(a.store.state_vector(DOC))
    with pytest.raises(StaleReplicaError):
        a.store.apply_update(DOC, stale)
    # The member that kept everything learns a's ranges, and refuses it too.
    await eventually(lambda: (full.store.gc_record(DOC) or GcState()).ranges.by_client != {})
    with pytest.raises(StaleReplicaError):
        full.store.apply_update(DOC, stale)
    assert full.store.gc_status(DOC).collected_items == 0  # it collected nothing itself
    # A node that joins now, from a's collected copy, knows them as well.
    fresh = await nodes.start([a], **GC)
    await eventually(lambda: values(fresh) == values(a))
    await eventually(lambda: (fresh.store.gc_record(DOC) or GcState()).ranges.by_client != {})
    with pytest.raises(StaleReplicaError):
        fresh.store.apply_update(DOC, stale)
    assert not any(n.daemon.stats.protocol_errors for n in (a, full, fresh))


@pytest.mark.timeout(60)
async def test_a_peer_upgraded_to_version_2_retires_its_stand_in(
    nodes: Nodes, cluster: Cluster
) -> None:
    """Found in review: its version-1 stand-in stayed a member, frozen, and held
    collection back for good after a rolling upgrade."""
    a = await nodes.start(**GC)
    a.store.create_document(DOC)
    peer = RawPeer(cluster)
    stand_in = legacy_member_id(peer.identity.node_id)
    try:
        await peer.connect(a, hello=False)
        await peer.send(frames.Hello((1,), peer.identity.node_id, peer.identity.cluster_id))
        await peer.send(StateVectors({DOC: b"\x00"}, reply=False))
        await eventually(lambda: stand_in in a.daemon.frontier.members)
    finally:
        await peer.close()
    try:  # the same node, same certificate, now speaking version 2
        await peer.connect(a)
        await peer.send(StateVectors({}, reply=False))  # reports count after this
        await peer.send(Reports({777: {DOC: {}}}))
        await eventually(lambda: 777 in a.daemon.frontier.members)
        assert stand_in not in a.daemon.frontier.members
        assert stand_in in a.daemon.frontier.forgotten
    finally:
        await peer.close()


@pytest.mark.timeout(60)
async def test_reports_are_split_into_bounded_frames_and_only_held_documents_kept(
    nodes: Nodes, cluster: Cluster
) -> None:
    a = await nodes.start(**GC)
    docs = [f"d{i}" for i in range(30)]
    for doc in docs:
        a.store.create_document(doc)
    await a.daemon.gc_round()
    # The default budget fits them all in one frame.
    (whole,) = a.daemon.reports_to_send()
    assert set(whole[a.store.replica_id]) == set(docs)
    # One member, empty state vectors: a document counts 8 (its name); 3 per frame.
    chunks = chunk_reports(a.daemon.frontier.reports, frozenset(), numbers_per_frame=24)
    assert len(chunks) == 10
    merged = {d for chunk in chunks for d in chunk[a.store.replica_id]}
    assert merged == set(docs)
    # Local-only documents never leave the node, whatever the budget.
    kept = chunk_reports(a.daemon.frontier.reports, frozenset({"d0"}), numbers_per_frame=24)
    assert {d for chunk in kept for d in chunk[a.store.replica_id]} == set(docs) - {"d0"}
    # A peer naming documents this node does not hold cannot grow its table.
    peer = RawPeer(cluster)
    try:
        await peer.connect(a)
        await peer.send(StateVectors({}, reply=False))  # reports count after this
        await peer.send(Reports({888: {"d0": {1: 1}, "nowhere": {1: 1}}}))
        await eventually(lambda: 888 in a.daemon.frontier.members)
        assert set(a.daemon.frontier.reports[888]) == {"d0"}
    finally:
        await peer.close()


@pytest.mark.timeout(60)
async def test_a_collection_is_told_to_peers_when_it_lands(nodes: Nodes) -> None:
    """Not at the next gc round: until a member that kept everything knows, it could
    take a stale write the collector refuses. Rounds are off here (an hour apart)."""
    a = await nodes.start(gc_round_s=3600.0)
    full = await nodes.start([a], store_config=replace(FAST_STORE, gc=GcMode.OFF))
    await full.daemon.wait_connected(1)
    for node in (a, full):
        node.store.create_document(DOC)
    overwrite(a, "a")
    await eventually(lambda: converged([a, full]))
    a.store.set_gc_frontier(DOC, decode_state_vector(a.store.state_vector(DOC)))
    a.store.compact(DOC)
    assert a.store.gc_status(DOC).collected_items > 0
    await eventually(lambda: (full.store.gc_record(DOC) or GcState()).ranges.by_client != {}, 5)


async def test_collected_frames_stay_within_the_decoders_limits(nodes: Nodes) -> None:
    """Found in review: a record of more clients than a frame may list (many
    short-lived Yjs clients) was one frame, and the peer refused it."""
    a = await nodes.start(**GC)
    a.store.create_document(DOC)
    many = frames.MAX_SV_CLIENTS + 10
    await a.store.amerge_gc(
        DOC,
        Ranges({c: [(0, 1)] for c in range(1, many)}),
        Ranges({c: [(1, 2)] for c in range(1, 40)}),
        {c: 2 for c in range(1, many)},
    )
    out = a.daemon.collected_frames(DOC)
    assert len(out) > 2
    runs = {c: r for f in out for c, r in f.ranges.items()}
    floor = {c: k for f in out for c, k in f.floor.items()}
    assert len(runs) == len(floor) == many - 1
    for frame in out:
        decoded = frames.decode(frames.encode(frame), max_bytes=32 << 20, max_docs=1000)
        assert decoded == frame
    # A smaller receiver budget: every frame within it, nothing lost.
    record = a.store.gc_record(DOC)
    small = collected_frames(record, DOC, max_numbers=64, max_clients=16)
    for frame in small:
        for part in (frame.ranges, frame.rehung, frame.floor):
            assert len(part) <= 16
        for part in (frame.ranges, frame.rehung):
            assert sum(len(r) for r in part.values()) <= 64
    assert {c for f in small for c in f.ranges} == set(runs)
    assert {c: r for f in small for c, r in f.rehung.items()} == {
        c: r for f in out for c, r in f.rehung.items()
    }
    assert {c: k for f in small for c, k in f.floor.items()} == floor
