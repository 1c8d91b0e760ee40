"""The frame codec, its limits, and the published schema against real traffic."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import jsonschema
import msgpack
import pytest

from edgestate.errors import ProtocolError
from edgestate.store import Delete, Incr, Set
from edgestate.sync import frames
from edgestate.sync.frames import (
    About,
    Collected,
    Diff,
    Hello,
    Peers,
    Push,
    Reports,
    StateVectors,
    Synced,
)
from tests.sync.conftest import Cluster, Nodes, RawPeer, eventually

SCHEMA = json.loads(
    (Path(__file__).resolve().parents[2] / "schemas" / "sync-protocol.schema.json").read_text()
)
SAMPLES: list[frames.Frame] = [
    Hello((1,), "a" * 64, "b" * 64),
    StateVectors({"docs": b"\x01\x02\x03", "x.y-z_1": b"\x00"}, reply=True),
    StateVectors({}, reply=False),
    Diff("docs", b"\x00\x00"),
    Push((("docs", b"\x01"), ("other", b"\x02\x03"))),
    Synced(),
    Peers(("a" * 64, "dev-1")),
    Peers(()),
    Collected("docs", {1 << 50: [0, 5, 9, 12]}, {7: [3, 4]}, {1 << 50: 12, 7: 4}),
    Collected("docs", {}, {}, {}),
]


def decode(data: bytes) -> frames.Frame:
    return frames.decode(data, max_bytes=1 << 20, max_docs=1000)


def as_json(value: Any) -> Any:
    """A decoded msgpack frame as the schema describes it: bin values as base64."""
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, dict):
        return {k: as_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [as_json(v) for v in value]
    return value


def validate_wire(data: bytes) -> None:
    jsonschema.validate(as_json(msgpack.unpackb(data, raw=False)), SCHEMA)


def test_schema_is_a_valid_json_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


@pytest.mark.parametrize("frame", SAMPLES, ids=lambda f: type(f).__name__)
def test_every_frame_type_round_trips_and_matches_the_schema(frame: frames.Frame) -> None:
    data = frames.encode(frame)
    assert decode(data) == frame
    validate_wire(data)


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (b"\xc1", "not valid msgpack"),
        (msgpack.packb([1, 2]), "not a msgpack map"),
        (msgpack.packb({"t": "gossip"}), "unknown frame type"),
        (msgpack.packb({"t": "diff", "doc": "d"}), "missing fields ['update']"),
        (msgpack.packb({"t": "diff", "doc": "d", "update": b"", "x": 1}), "unexpected fields"),
        (msgpack.packb({"t": "diff", "doc": "d", "update": "text"}), "must be bytes"),
        (msgpack.packb({"t": "diff", "doc": "../etc", "update": b""}), "document name"),
        (msgpack.packb({"t": "push", "updates": []}), "non-empty"),
        (msgpack.packb({"t": "push", "updates": [["d"]]}), "[doc, bytes]"),
        (msgpack.packb({"t": "svs", "docs": {"d": b""}, "reply": 1}), "boolean"),
        (msgpack.packb({"t": "hello", "versions": [], "node": "n", "cluster": "c"}), "versions"),
        (msgpack.packb({"t": "hello", "versions": [1], "node": "", "cluster": "c"}), "node"),
    ],
)
def test_malformed_frames_are_rejected_with_a_reason(data: bytes, needle: str) -> None:
    with pytest.raises(frames.MalformedFrameError, match=None) as info:
        decode(data)
    assert needle in str(info.value)
    assert isinstance(info.value, ProtocolError)


def test_oversized_frames_are_rejected_before_decoding() -> None:
    data = frames.encode(Diff("d", b"x" * 2048))
    with pytest.raises(frames.OversizedFrameError, match="over the 1024 limit"):
        frames.decode(data, max_bytes=1024, max_docs=10)


def test_too_many_documents_in_one_frame_are_refused() -> None:
    data = frames.encode(StateVectors({f"d{i}": b"\x00" for i in range(11)}, reply=False))
    with pytest.raises(frames.RateLimitedError):
        frames.decode(data, max_bytes=1 << 20, max_docs=10)


def test_version_negotiation_picks_the_highest_common_version() -> None:
    assert frames.negotiate((1, 2, 3), (2, 3, 4)) == 3
    assert frames.negotiate((1,), (2,)) is None


@pytest.mark.timeout(30)
async def test_frames_a_node_really_sends_match_the_schema(nodes: Nodes, cluster: Cluster) -> None:
    node = await nodes.start()
    node.store.create_document("docs")
    node.store.batch([Set("docs", "a", b"1"), Incr("docs", "n", 2)])
    peer = RawPeer(cluster)
    try:
        await peer.connect(node)
        # Version 2 reports members before any state vector (see sync.frontier).
        # Version 5 tells its clock and replica id first (frames.About).
        seen = [type(await peer.recv()) for _ in range(5)]
        assert seen == [Hello, About, Peers, Reports, StateVectors]
        # We name no documents and ask for a reply: the node sends what we lack
        # (the whole of "docs"), marks the end, and sends its own state vectors.
        await peer.send(StateVectors({}, reply=True))
        # ...with its clock reading right before its state vectors (version 5).
        assert [type(await peer.recv()) for _ in range(4)] == [Diff, Synced, About, StateVectors]
        await peer.send(Synced())  # our (empty) answer to its handshake
        await node.daemon.wait_connected(1)
        node.store.batch([Set("docs", "b", b"2"), Delete("docs", "a")])
        # Version 2 also reports member state vectors right after the handshake.
        seen = [type(await peer.recv()) for _ in range(2)]
        assert sorted(t.__name__ for t in seen) == ["Push", "Reports"]
        for raw in peer.raw_received:
            validate_wire(raw)
    finally:
        await peer.close()
    await eventually(lambda: node.daemon.connected() == [])


@pytest.mark.parametrize(
    "body",
    [
        {"t": "collected", "doc": "d", "ranges": [[1, [5, 5]]], "rehung": [], "floor": []},
        {"t": "collected", "doc": "d", "ranges": [[1, [0, 1, 2]]], "rehung": [], "floor": []},
        {"t": "collected", "doc": "d", "ranges": [[-1, [0, 1]]], "rehung": [], "floor": []},
        {"t": "collected", "doc": "d", "ranges": [], "rehung": [[1, "x"]], "floor": []},
        {"t": "collected", "doc": "d", "ranges": [], "rehung": [], "floor": [1]},
        {"t": "collected", "doc": "../d", "ranges": [], "rehung": [], "floor": []},
        {"t": "collected", "doc": "d", "ranges": []},
    ],
    ids=["empty-run", "odd-runs", "negative-client", "not-ints", "odd-floor", "bad-doc", "fields"],
)
def test_malformed_collected_frames_are_refused(body: dict[str, Any]) -> None:
    with pytest.raises(frames.MalformedFrameError):
        decode(msgpack.packb(body, use_bin_type=True))
