"""Frame size limits against one hostile peer (hardening item 8): big diffs in parts,
a small transport limit, small frames before hello, bytes in flight per connection."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import jsonschema
import msgpack
import pytest
from aiohttp import WSCloseCode
from pycrdt import Doc, Map

from edgestate.store import Set
from edgestate.sync import frames, gossip
from edgestate.sync.config import Limits
from edgestate.sync.connection import PRE_HELLO_MAX_BYTES
from edgestate.sync.frames import Diff, DiffPart, Hello, StateVectors, Synced
from tests.sync.conftest import Cluster, Node, Nodes, RawPeer, eventually

pytestmark = pytest.mark.timeout(60)

SCHEMA = json.loads(
    (Path(__file__).resolve().parents[2] / "schemas" / "sync-protocol.schema.json").read_text()
)
SMALL = Limits(max_frame_bytes=64 << 10, max_diff_frame_bytes=4 << 20)


def real_update(key: str, value: bytes) -> bytes:
    doc: Doc = Doc()
    doc.get("root", type=Map)[key] = value
    update: bytes = doc.get_update()
    return update


async def still_serves(a: Node, b: Node, key: str) -> None:
    a.store.create_document("docs")
    await a.store.abatch([Set("docs", key, b"ok")])
    await eventually(lambda: b.store.has_document("docs") and b.store.get("docs", key) == b"ok")


async def closed_by(
    cluster: Cluster,
    node: Node,
    *sends: bytes | frames.Frame,
    hello: bool = True,
    versions: tuple[int, ...] = frames.PROTOCOL_VERSIONS,
) -> tuple[int | None, str]:
    peer = RawPeer(cluster)
    try:
        await peer.connect(node, hello=False)
        if hello:
            await peer.send(Hello(versions, peer.identity.node_id, peer.identity.cluster_id))
        for item in sends:
            await (peer.send_raw(item) if isinstance(item, bytes) else peer.send(item))
        async with asyncio.timeout(20):
            return await peer.wait_closed()
    finally:
        await peer.close()


def test_a_diff_part_matches_the_schema() -> None:
    part = DiffPart("docs", 1, 3, b"\x01\x02")
    data = frames.encode(part)
    assert frames.decode(data, max_bytes=1 << 10, max_docs=10) == part
    body = msgpack.unpackb(data, raw=False)
    body["bytes"] = "AQI="
    jsonschema.validate(body, SCHEMA)


async def test_a_big_diff_comes_in_parts_within_the_frame_limit(
    nodes: Nodes, cluster: Cluster
) -> None:
    a = await nodes.start(limits=SMALL)
    a.store.create_document("big")
    a.store.batch([Set("big", f"k{i}", bytes([i]) * (40 << 10)) for i in range(20)])  # ~800 KiB
    peer = RawPeer(cluster)
    try:
        await peer.connect(a)
        await peer.send(StateVectors({}, reply=False))
        assembled: list[bytes] = []
        async with asyncio.timeout(20):
            while True:
                frame = await peer.recv()
                assert len(peer.raw_received[-1]) <= SMALL.max_frame_bytes
                if isinstance(frame, DiffPart):
                    assert frame.doc == "big" and frame.index == len(assembled)
                    assembled.append(frame.data)
                elif isinstance(frame, Synced):
                    break
                else:
                    assert not isinstance(frame, Diff) or frame.doc != "big", "one big frame"
    finally:
        await peer.close()
    assert len(assembled) > 10
    whole = frames.decode(b"".join(assembled), max_bytes=1 << 30, max_docs=10)
    assert isinstance(whole, Diff) and whole.doc == "big"
    doc: Doc = Doc()
    doc.apply_update(whole.update)
    assert doc.get("root", type=Map)["k19"] == bytes([19]) * (40 << 10)


async def test_big_documents_replicate_between_nodes_in_parts(nodes: Nodes) -> None:
    a = await nodes.start(limits=SMALL)
    a.store.create_document("big")
    a.store.batch([Set("big", f"k{i}", bytes([i]) * (40 << 10)) for i in range(20)])
    b = await nodes.start([a], limits=SMALL)
    await eventually(lambda: b.store.has_document("big") and b.store.get("big", "k19") is not None)
    assert b.store.get("big", "k19") == bytes([19]) * (40 << 10)
    assert sum(b.daemon.stats.protocol_errors.values()) == 0


async def test_a_version_3_peer_big_diff_is_refused_naming_the_upgrade(
    nodes: Nodes, cluster: Cluster
) -> None:
    a = await nodes.start(limits=SMALL)
    b = await nodes.start([a], limits=SMALL)
    await b.daemon.wait_connected(1)
    diff = Diff("docs", real_update("k", b"x" * (70 << 10)))
    code, reason = await closed_by(cluster, a, diff, versions=(1, 2, 3))
    assert code == WSCloseCode.MESSAGE_TOO_BIG, (code, reason)
    assert "version 4" in reason and "upgrade" in reason, reason
    await still_serves(a, b, "after-v3-diff")


@pytest.mark.parametrize(
    ("parts", "code", "needle"),
    [
        ([DiffPart("docs", 1, 2, b"x")], WSCloseCode.PROTOCOL_ERROR, "without part 0"),
        (
            [DiffPart("docs", 0, 3, b"x"), DiffPart("other", 1, 3, b"x")],
            WSCloseCode.PROTOCOL_ERROR,
            "is due",
        ),
        ([DiffPart("docs", 0, 2, b"x"), Synced()], WSCloseCode.PROTOCOL_ERROR, "incomplete"),
        (
            [
                DiffPart("docs", 0, 2, frames.encode(Synced())[:6]),
                DiffPart("docs", 1, 2, frames.encode(Synced())[6:]),
            ],
            WSCloseCode.PROTOCOL_ERROR,
            "do not make a diff",
        ),
        (
            [DiffPart("docs", i, 100, b"x" * (60 << 10)) for i in range(100)],
            WSCloseCode.MESSAGE_TOO_BIG,
            "over the 4194304 limit",
        ),
    ],
    ids=["no-first", "other-doc", "synced-midway", "not-a-diff", "over-total"],
)
async def test_bad_parts_close_only_that_connection(
    nodes: Nodes, cluster: Cluster, parts: list[frames.Frame], code: int, needle: str
) -> None:
    a = await nodes.start(limits=SMALL)
    b = await nodes.start([a], limits=SMALL)
    await b.daemon.wait_connected(1)
    got_code, reason = await closed_by(cluster, a, *parts)
    assert got_code == code and needle in reason, (got_code, reason)
    await still_serves(a, b, "after-bad-parts")


async def test_a_big_frame_before_hello_is_refused(nodes: Nodes, cluster: Cluster) -> None:
    a = await nodes.start()
    b = await nodes.start([a])
    await b.daemon.wait_connected(1)
    blob = msgpack.packb({"t": "hello", "pad": b"x" * (20 << 20)})
    code, reason = await closed_by(cluster, a, blob, hello=False)
    assert code == WSCloseCode.MESSAGE_TOO_BIG, (code, reason)
    assert f"before the hello exchange is over the {PRE_HELLO_MAX_BYTES} limit" in reason
    assert a.daemon.stats.protocol_errors["oversized_frame"] == 1
    await still_serves(a, b, "after-pre-hello")


async def test_update_bytes_in_flight_are_bounded_per_connection(
    nodes: Nodes, cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    limit, size = 512 << 10, 200 << 10
    monkeypatch.setattr(gossip, "MAX_INFLIGHT_BYTES", limit)
    a = await nodes.start()
    peer = RawPeer(cluster)
    peak = 0
    stop = asyncio.Event()

    async def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            for conn in a.daemon._table.conns.values():
                peak = max(peak, conn.inflight_bytes)
            await asyncio.sleep(0)

    sampler = asyncio.create_task(sample())
    try:
        await peer.connect(a)
        for i in range(60):
            await peer.send(Diff(f"d{i}", real_update("k", bytes([i % 250]) * size)))
        await eventually(lambda: len(a.store.documents()) == 60, seconds=30)
    finally:
        stop.set()
        await sampler
        await peer.close()
    assert peak > 0
    # One update may be submitted before the oldest is awaited.
    assert peak <= limit + size + 1024, peak


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) << 10
    raise AssertionError("no VmRSS")


async def _attack(url: str, sends: list[bytes]) -> int | None:
    import aiohttp

    async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
        for data in sends:
            await ws.send_bytes(data)
        async with asyncio.timeout(30):
            while not ws.closed:
                msg = await ws.receive()
                if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                    break
        return ws.close_code


async def test_a_real_node_gives_memory_back_after_big_frames(tmp_path: Path) -> None:
    import aiohttp

    from tests.node.conftest import start_node

    node = start_node(tmp_path / "n", "--no-mdns")
    try:
        url = f"ws://127.0.0.1:{node.sync_port}/sync"
        pid = node.proc.pid
        before = _rss(pid)
        peak = before
        sampling = True

        async def sample() -> None:
            nonlocal peak
            while sampling:
                peak = max(peak, _rss(pid))
                await asyncio.sleep(0.02)

        sampler = asyncio.create_task(sample())
        blob = b"\x00" * (30 << 20)
        codes = await asyncio.gather(*(_attack(url, [blob]) for _ in range(3)))
        assert codes == [WSCloseCode.MESSAGE_TOO_BIG] * 3, codes
        # Admitted, then 64 MiB of an assembly that is never finished.
        hello = frames.encode(Hello(frames.PROTOCOL_VERSIONS, "attacker", "dev"))
        part = b"\x01" * (8 << 20)
        sends = [hello] + [frames.encode(DiffPart("docs", i, 100, part)) for i in range(8)]
        sends.append(b"\xc1")  # malformed: the node closes and drops the assembly
        assert await _attack(url, sends) == WSCloseCode.PROTOCOL_ERROR
        sampling = False
        await sampler
        await asyncio.sleep(0.5)
        after = _rss(pid)
        print(f"node RSS before {before >> 20} MiB, peak {peak >> 20} MiB, after {after >> 20} MiB")
        assert after < before + (200 << 20), (before, peak, after)
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{node.api}/healthz") as resp:
                assert resp.status == 200
    finally:
        node.stop()
