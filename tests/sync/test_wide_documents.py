"""Documents touched by very many Yjs clients, and state vectors from version-1
peers: every frame a node builds stays within the receiver's limits, and a
broken vector is a protocol error by name (hardening items 7 and 11)."""

from __future__ import annotations

import random

import pytest

from edgestate.store import Set, decode_state_vector
from edgestate.sync import frames
from edgestate.sync.frames import Reports, StateVectors
from edgestate.sync.membership import chunk_reports, legacy_member_id
from tests.sync.conftest import Cluster, Node, Nodes, RawPeer, eventually

DOC = "wide"
GC = dict(gc_round_s=3600.0)  # rounds run by hand here


def varuint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    out.append(value)
    return bytes(out)


def client_ids(count: int, seed: int) -> list[int]:
    """Distinct 32-bit Yjs client ids, as browsers pick them."""
    return random.Random(seed).sample(range(1, 1 << 32), count)


def wide_update(clients: list[int]) -> bytes:
    """One Yjs v1 update: client i sets key ``k<i>`` of map ``aux`` once (clock 0).

    Built byte by byte (the layout of pycrdt's own one-write update) because
    70,000 pycrdt documents would take most of the test's time. Not the store's
    ``root`` map, whose key-value table is beside the point here (and slow to
    materialize 70,000 keys of one update: noticed, left to the store)."""
    parts = [varuint(len(clients))]
    for i, client in enumerate(clients):
        key = f"k{i}".encode()
        # map set, parent "aux", key, content "any": bytes b"x"
        item = b"\x28\x01\x03aux" + varuint(len(key)) + key + b"\x01\x74\x01x"
        parts.append(b"\x01" + varuint(client) + b"\x00" + item)
    parts.append(b"\x00")  # empty delete set
    return b"".join(parts)


def state_vector(clients: list[int], clock: int = 1) -> bytes:
    return varuint(len(clients)) + b"".join(varuint(c) + varuint(clock) for c in clients)


def no_protocol_errors(*group: Node) -> bool:
    return all(not node.daemon.stats.protocol_errors for node in group)


async def replicates(a: Node, b: Node, key: str) -> None:
    a.store.create_document("plain")
    await a.store.abatch([Set("plain", key, b"ok")])
    await eventually(lambda: b.store.has_document("plain") and b.store.get("plain", key) == b"ok")


@pytest.mark.timeout(120)
async def test_a_document_written_by_70k_clients_replicates(nodes: Nodes) -> None:
    a = await nodes.start(**GC)
    clients = client_ids(70_000, seed=7)
    await a.store.aapply_update(DOC, wide_update(clients), create=True)
    await a.daemon.gc_round()  # its own report now holds a 70,000-client vector
    assert len(a.daemon.frontier.reports[a.store.replica_id][DOC]) == 70_000
    b = await nodes.start([a], **GC)
    await eventually(lambda: b.store.has_document(DOC), 60)
    await eventually(lambda: b.store.state_vector(DOC) == a.store.state_vector(DOC), 60)
    # B took A's reports whole: every client of the vector, over several frames.
    await eventually(
        lambda: len(b.daemon.frontier.reports.get(a.store.replica_id, {}).get(DOC, {})) == 70_000,
        30,
    )
    assert no_protocol_errors(a, b), (a.daemon.stats, b.daemon.stats)
    assert b.daemon.connected() == [a.daemon.node_id]
    await replicates(a, b, "after")


@pytest.mark.timeout(180)
async def test_a_version_1_peer_with_a_1m_client_state_vector_breaks_no_link(
    nodes: Nodes, cluster: Cluster
) -> None:
    # Both daemons share this test's event loop, and handling a million-client
    # report still holds it for seconds (item 8, not fixed here): a heartbeat
    # longer than that keeps this test about frame limits, not about load.
    slow = dict(GC, heartbeat_s=600.0)
    a = await nodes.start(**slow)
    a.store.create_document(DOC)
    await a.store.abatch([Set(DOC, "k", b"v")])
    b = await nodes.start([a], **slow)
    await eventually(lambda: b.store.has_document(DOC))
    old = RawPeer(cluster)  # version 1: A reports its state vectors for it
    clients = client_ids(1_000_000, seed=11)
    try:
        await old.connect(a, hello=False)
        await old.send(frames.Hello((1,), old.identity.node_id, old.identity.cluster_id))
        await old.send(StateVectors({DOC: state_vector(clients)}, reply=False))
        member = legacy_member_id(old.identity.node_id)
        await eventually(lambda: member in a.daemon.frontier.members, 60)
        await a.daemon.gc_round()  # reports, with the stand-in's 1M clients, to B
        await eventually(
            lambda: len(b.daemon.frontier.reports.get(member, {}).get(DOC, {})) == 1_000_000,
            90,
        )
        assert no_protocol_errors(a, b), (a.daemon.stats, b.daemon.stats)
        await replicates(a, b, "after")
    finally:
        await old.close()


def test_report_frames_respect_every_decoder_limit() -> None:
    """Members x documents x clients, each past a limit: every frame decodes."""
    wide = {c: 1 for c in client_ids(3 * frames.MAX_SV_CLIENTS + 5, seed=3)}
    reports = {1: {"a": wide, "b": {}}, **{m: {"a": {m: 2}} for m in range(2, 5000)}}
    reports[6000] = {}  # a member that holds nothing yet is still news
    chunks = chunk_reports(reports, frozenset(), numbers_per_frame=1 << 20)
    merged: dict[int, dict[str, dict[int, int]]] = {}
    for chunk in chunks:
        data = frames.encode(Reports(chunk))
        frame = frames.decode(data, max_bytes=32 << 20, max_docs=100_000)
        assert isinstance(frame, Reports)
        for m, docs in frame.members.items():
            for d, v in docs.items():
                merged.setdefault(m, {}).setdefault(d, {}).update(v)
            merged.setdefault(m, {})
    assert merged == reports


async def test_a_truncated_version_1_state_vector_is_a_protocol_error(
    nodes: Nodes, cluster: Cluster
) -> None:
    a = await nodes.start(**GC)
    a.store.create_document("kv")
    old = RawPeer(cluster)
    try:
        await old.connect(a, hello=False)
        await old.send(frames.Hello((1,), old.identity.node_id, old.identity.cluster_id))
        await old.send(StateVectors({"kv": b"\x05\x01"}, reply=False))
        code, reason = await old.wait_closed()
    finally:
        await old.close()
    assert code == 1002
    assert "malformed_frame" in reason and "state vector" in reason
    assert a.daemon.stats.protocol_errors["malformed_frame"] == 1
    assert legacy_member_id(old.identity.node_id) not in a.daemon.frontier.members
    assert decode_state_vector(a.store.state_vector("kv")) == {}
