"""The collection record rides in the diff of the collected history it describes
(protocol version 3), over real daemons: a link cut right after the diff leaves
the record behind on the receiver, version-2 peers still get diff then collected
frames, and a version-2 peer may not send a diff carrying one."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import pytest
from pycrdt import Doc, Map

from edgestate.errors import StaleReplicaError
from edgestate.store import GcMode, GcState, Store
from edgestate.sync import Channel, frames, memory_channel_pair
from edgestate.sync.channel import CloseCode
from edgestate.sync.frames import Collected, Diff, Synced
from tests.sync.conftest import FAST_STORE, Cluster, Node, Nodes, PassThrough, RawPeer, eventually
from tests.sync.test_frames import validate_wire

pytestmark = pytest.mark.timeout(60)

DOC = "d"
SOLO_STORE = replace(FAST_STORE, gc=GcMode.SOLO)


def _doc(client: int, update: bytes | None = None) -> tuple[Doc, Map]:  # type: ignore[type-arg]
    doc: Doc = Doc(client_id=client)
    root = doc.get("root", type=Map)
    if update is not None:
        doc.apply_update(update)
    return doc, root


def collected_store(path: Path) -> Doc:
    """A data directory whose ``d`` has collected history; returns an offline Yjs
    replica that missed the collection (it holds a collected item but not the
    item re-hung below it)."""
    a, a_root = _doc(1)
    s, s_root = _doc(3)
    b, b_root = _doc(2)
    a_root["k"] = b"P"
    s.apply_update(a.get_update())
    for i in range(200):
        s_root[f"g{i % 4}"] = f"{i}".encode()
    s_root["k"] = b"s"
    offline, _ = _doc(77, s.get_update())
    b.apply_update(s.get_update())
    b_root["k"] = b"K"
    with Store.open(path, SOLO_STORE) as store:
        store.apply_update(DOC, b.get_update(), create=True)
        store.compact(DOC)
        store.compact(DOC)
        assert store.gc_status(DOC).collected_items > 0
    return offline


class CutAfterDiff(PassThrough):
    """Closes right after sending its first diff frame: the link drops between
    the diff and whatever would have followed it."""

    def __init__(self, inner: Channel) -> None:
        super().__init__(inner)
        self.sent_frames: list[frames.Frame] = []

    async def sent(self, frame: frames.Frame) -> None:
        self.sent_frames.append(frame)
        if isinstance(frame, Diff):
            await self._inner.close(CloseCode.GOING_AWAY, "link lost (test)")


async def start_collector(nodes: Nodes, tmp_path: Path) -> tuple[Node, Doc]:
    offline = collected_store(tmp_path / "collector")
    collector = await nodes.start(path=tmp_path / "collector", store_config=SOLO_STORE)
    return collector, offline


async def test_a_link_cut_right_after_the_diff_leaves_the_record_behind(
    nodes: Nodes, tmp_path: Path
) -> None:
    collector, offline = await start_collector(nodes, tmp_path)
    fresh = await nodes.start()
    ours, theirs = memory_channel_pair()
    cut = CutAfterDiff(ours)
    tasks = [
        asyncio.ensure_future(collector.daemon.run_channel(cut, True)),
        asyncio.ensure_future(fresh.daemon.run_channel(theirs, False)),
    ]
    try:
        async with asyncio.timeout(20):
            await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        for task in tasks:
            task.cancel()
    assert not any(isinstance(f, Collected | Synced) for f in cut.sent_frames)  # never got that far
    await eventually(lambda: fresh.store.has_document(DOC) and fresh.store.get(DOC, "k") == b"K")
    # The fresh node turns the replica that missed the collection away, as the
    # collector does, instead of serving it a history it loses a key with.
    for node in (collector, fresh):
        with pytest.raises(StaleReplicaError, match="afresh"):
            node.store.diff(DOC, offline.get_state())
    record = fresh.store.gc_record(DOC)
    assert record is not None
    assert record.record() == (collector.store.gc_record(DOC) or GcState()).record()
    (diff,) = [f for f in cut.sent_frames if isinstance(f, Diff)]
    assert diff.collected is not None  # it came inside the diff


async def test_a_fresh_node_joining_a_collector_knows_its_record_at_once(
    nodes: Nodes, tmp_path: Path
) -> None:
    collector, offline = await start_collector(nodes, tmp_path)
    fresh = await nodes.start([collector])

    def caught_up() -> bool:
        return fresh.store.has_document(DOC) and fresh.store.get(DOC, "k") == b"K"

    await eventually(caught_up)
    # The record landed in the commit that brought the history: no later frame needed.
    assert (fresh.store.gc_record(DOC) or GcState()).record() is not None
    with pytest.raises(StaleReplicaError):
        fresh.store.diff(DOC, offline.get_state())
    assert not any(n.daemon.stats.protocol_errors for n in (collector, fresh))


async def _handshake(peer: RawPeer, node: Node, versions: tuple[int, ...]) -> list[object]:
    """Connect speaking ``versions``, name no documents, and return every frame up
    to the node's ``synced``."""
    await peer.connect(node, hello=False)
    await peer.send(frames.Hello(versions, peer.identity.node_id, peer.identity.cluster_id))
    await peer.send(frames.StateVectors({}, reply=False))
    got: list[object] = []
    async with asyncio.timeout(20):
        while not got or not isinstance(got[-1], Synced):
            got.append(await peer.recv())
    return got


async def test_a_version_2_peer_gets_the_diff_then_collected_frames(
    nodes: Nodes, tmp_path: Path, cluster: Cluster
) -> None:
    collector, _ = await start_collector(nodes, tmp_path)
    for versions, inline in (((1, 2), False), ((1, 2, 3), True)):
        peer = RawPeer(cluster)
        try:
            got = await _handshake(peer, collector, versions)
        finally:
            await peer.close()
        for raw in peer.raw_received:
            validate_wire(raw)  # what a real node sends, against the published schema
        (diff,) = [f for f in got if isinstance(f, Diff)]
        after = got[got.index(diff) + 1 : -1]
        if inline:
            assert diff.collected is not None and diff.collected.ranges
            assert after == []
        else:
            # Byte for byte the version-2 frame: no field its decoder would refuse.
            raw = peer.raw_received[got.index(diff)]
            assert b"collected" not in raw
            assert diff.collected is None
            assert after and all(isinstance(f, Collected) for f in after)


async def test_a_version_2_peer_may_not_send_a_diff_carrying_a_record(
    nodes: Nodes, tmp_path: Path, cluster: Cluster
) -> None:
    node = await nodes.start()
    peer = RawPeer(cluster)
    try:
        await _handshake(peer, node, (1, 2))
        record = Collected(DOC, {1: [0, 5]}, {}, {1: 9})
        await peer.send(Diff(DOC, b"\x00\x00", record))
        code, reason = await peer.wait_closed()
    finally:
        await peer.close()
    assert code == 1002 and "protocol version 2" in reason
    assert not node.store.has_document(DOC)


# --- the codec ----------------------------------------------------------------------


def test_a_diff_carrying_a_record_round_trips_and_matches_the_schema() -> None:
    record = Collected(DOC, {7: [0, 4, 9, 12]}, {7: [13, 14]}, {7: 20, 8: 3})
    for frame in (Diff(DOC, b"\x00\x00", record), Diff(DOC, b"\x00\x00")):
        data = frames.encode(frame)
        validate_wire(data)
        assert frames.decode(data, max_bytes=1 << 20, max_docs=10) == frame


@pytest.mark.parametrize(
    ("collected", "says"),
    [
        ([1, 2], "diff.collected must be a map"),
        ({"ranges": [], "rehung": []}, "exactly ranges, rehung and floor"),
        ({"ranges": [], "rehung": [], "floor": [], "t": "x"}, "exactly ranges, rehung and floor"),
        ({"ranges": [[1, [5, 2]]], "rehung": [], "floor": []}, "start < end"),
        ({"ranges": [], "rehung": [], "floor": [1]}, "collected.floor"),
    ],
)
def test_a_malformed_record_in_a_diff_is_refused_by_name(collected: object, says: str) -> None:
    import msgpack

    from edgestate.errors import MalformedFrameError

    data = msgpack.packb(
        {"t": "diff", "doc": DOC, "update": b"\x00\x00", "collected": collected},
        use_bin_type=True,
    )
    with pytest.raises(MalformedFrameError, match=says):
        frames.decode(data, max_bytes=1 << 20, max_docs=10)
