"""Frames of the node-to-node sync protocol and their msgpack codec.

Every frame is one binary WebSocket message holding one msgpack map whose ``t``
field names its type. ``schemas/sync-protocol.schema.json`` describes each type
for third-party peers; the decoder here is strict (unknown type, missing or
extra field, wrong type: all ``MalformedFrameError``) so that a peer speaking a
near-miss dialect fails loudly on its first frame rather than diverging later.

Conversation (both sides act alike, there is no client/server role after the
WebSocket upgrade):

1. ``hello``: each side sends its protocol versions, node id and cluster id;
   both pick the highest common version.
2. ``svs``: each side sends the state vectors of its replicated documents.
3. ``diff``: for each document, whatever the other side's state vector lacks
   (the whole document if the other side does not have it: it is created).
   The diffs answering one ``svs`` end with ``synced``.
4. ``peers``: the sender's connected node ids, at connect and on every change.
5. ``push``: from then on, the update bytes of each local or relayed commit,
   coalesced into one frame per send.
6. ``svs`` again at anti-entropy time, with ``reply`` set so the receiver answers
   with its own state vectors and both sides send what the other lacks.
7. ``reports`` (version 2): per cluster member (store replica id), the newest
   state vector of each document it reported, and the members an operator
   forgot. Sent right after ``peers`` (before ``svs``: each side is the other's
   member before any diff flows), once caught up, and every gc round; they set
   the garbage-collection frontier (edgestate.sync.frontier).
8. ``collected`` (version 2): what the sender garbage-collected of a document,
   right after each diff of it and to every peer when a collection lands, so
   every node refuses the same stale writes (edgestate.store.gc_rule).
9. ``diff.collected`` (version 3): the collection record of the history a diff
   carries rides in the diff itself and is applied in the same commit (found in
   the hardening issue: a node bootstrapped from a collector's diff held
   collected history without its record until the ``collected`` frame came, or
   for good if the link dropped first, and in that window served a replica that
   missed the collection, which then lost a key).
10. ``diff_part`` (version 4): a diff frame over the part size travels as the
   slices of its encoding, reassembled by the receiver (edgestate.sync.parts), so
   no WebSocket message is ever larger than ``max_frame_bytes``.
11. ``about`` (version 5, optional): the sender's wall clock and store replica id,
   sent first after the hello and before the state vectors of every exchange, so
   the receiver knows the skew between their clocks and which cluster member
   (replica id) the peer is (``edgestate doctor``). A frame, not a hello field:
   the hello decoder of versions 1 to 4 refuses any field it does not know.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import msgpack

from edgestate.errors import (
    MalformedFrameError,
    OversizedFrameError,
    RateLimitedError,
)
from edgestate.store import DOC_NAME_RULE, is_doc_name

# Versions this code speaks; hello negotiates the highest common one.
PROTOCOL_VERSIONS: tuple[int, ...] = (1, 2, 3, 4, 5)
# The first version with ``reports`` frames.
REPORTS_VERSION = 2
# The first version whose diffs carry the collection record of their history.
RECORD_IN_DIFF_VERSION = 3
# The first version that sends big diffs as ``diff_part`` frames.
PARTS_VERSION = 4
# The first version with ``about`` frames (wall clock, replica id).
ABOUT_VERSION = 5
# Largest wall-clock value an about frame may carry (Unix seconds, year ~36812):
# anything above is no clock reading.
MAX_ABOUT_TIME = float(1 << 40)

# Node and cluster ids are hex fingerprints in TLS mode, short names in
# insecure mode.
_ID = re.compile(r"[A-Za-z0-9_.:-]{1,128}")


@dataclass(frozen=True, slots=True)
class Hello:
    """First frame on each side: who we are and which versions we speak."""

    versions: tuple[int, ...]
    node: str
    cluster: str


@dataclass(frozen=True, slots=True)
class StateVectors:
    """Yjs v1 state vectors of the sender's replicated documents.

    The receiver answers with a ``Diff`` for each of its documents the sender
    lacks something of, and with its own ``StateVectors`` if ``reply`` is set.
    """

    docs: dict[str, bytes]
    reply: bool


@dataclass(frozen=True, slots=True)
class Diff:
    """A Yjs v1 update with what the receiver lacks; creates the document.

    ``collected`` (version 3, of the same document) is the sender's collection
    record of the history the update carries; the receiver applies both in one
    commit. None when the sender collected nothing or the record is too large for
    one collected frame's limits (then it follows as ``collected`` frames).
    """

    doc: str
    update: bytes
    collected: Collected | None = None


@dataclass(frozen=True, slots=True)
class Synced:
    """Ends the diffs that answer one ``StateVectors``: they are all applied.

    A node catching up holds its other handshakes until this arrives, so after a
    restart it fetches what it missed from one peer, not from every peer.
    """


@dataclass(frozen=True, slots=True)
class Peers:
    """The node ids the sender is connected to right now.

    The receiver does not relay an update it got from this sender to the
    sender's own peers: they got it from the sender already. That keeps a full
    mesh from carrying every update N times; anti-entropy heals the rare miss
    when a link drops while an update is in flight.
    """

    nodes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Push:
    """Update bytes of one or more commits, in commit order, as (doc, update)."""

    updates: tuple[tuple[str, bytes], ...]


@dataclass(frozen=True, slots=True)
class Reports:
    """Member (store replica id) -> document -> newest reported state vector.

    A state vector is a flat list ``[client, clock, client, clock, ...]``.
    ``forgotten`` lists members an operator removed: the receiver forgets them
    too, so a forget made on one node holds cluster-wide.
    """

    members: dict[int, dict[str, dict[int, int]]]
    forgotten: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class Collected:
    """What the sender garbage-collected of ``doc`` (version 2), so the receiver
    refuses the same stale writes: clock ranges and re-hang points as client ->
    flat ``[start, end, start, end, ...]``, and the floor (max of the frontiers
    used) as client -> clock."""

    doc: str
    ranges: dict[int, list[int]]
    rehung: dict[int, list[int]]
    floor: dict[int, int]


@dataclass(frozen=True, slots=True)
class DiffPart:
    """Slice ``index`` of ``count`` (version 4) of one encoded ``diff`` frame of ``doc``."""

    doc: str
    index: int
    count: int
    data: bytes


@dataclass(frozen=True, slots=True)
class About:
    """The sender's wall clock (Unix seconds) and store replica id (version 5)."""

    now: float
    replica: int


Frame = Hello | StateVectors | Diff | Push | Synced | Peers | Reports | Collected | DiffPart | About

# Most node ids one peers frame may list.
MAX_PEERS = 4096
# Most parts of one diff: a 1 GiB diff in 8 MiB parts is 128; this leaves room for
# peers whose frame limit (and so part size) is smaller.
MAX_PARTS = 1 << 16


def encode(frame: Frame) -> bytes:
    """Encode ``frame`` as the msgpack map that goes on the wire."""
    body: dict[str, Any]
    match frame:
        case Hello(versions, node, cluster):
            body = {"t": "hello", "versions": list(versions), "node": node, "cluster": cluster}
        case StateVectors(docs, reply):
            body = {"t": "svs", "docs": docs, "reply": reply}
        case Diff(doc, update, collected):
            body = {"t": "diff", "doc": doc, "update": update}
            if collected is not None:
                body["collected"] = _record_body(collected)
        case DiffPart(doc, index, count, data):
            body = {"t": "diff_part", "doc": doc, "index": index, "count": count, "bytes": data}
        case Push(updates):
            body = {"t": "push", "updates": [[doc, update] for doc, update in updates]}
        case Synced():
            body = {"t": "synced"}
        case Peers(nodes):
            body = {"t": "peers", "nodes": list(nodes)}
        case Collected(doc, _, _, _):
            body = {"t": "collected", "doc": doc, **_record_body(frame)}
        case About(now, replica):
            body = {"t": "about", "now": float(now), "replica": replica}
        case Reports(members, forgotten):
            body = {
                "t": "reports",
                "forgotten": list(forgotten),
                "members": [
                    [m, {doc: [x for pair in sv.items() for x in pair] for doc, sv in docs.items()}]
                    for m, docs in members.items()
                ],
            }
    packed: bytes = msgpack.packb(body, use_bin_type=True)
    return packed


def _record_body(record: Collected) -> dict[str, Any]:
    """The record fields of a collected frame (also a version-3 diff's ``collected``)."""
    return {
        "ranges": [[c, runs] for c, runs in record.ranges.items()],
        "rehung": [[c, runs] for c, runs in record.rehung.items()],
        "floor": [x for pair in record.floor.items() for x in pair],
    }


def decode(
    data: bytes, *, max_bytes: int, max_docs: int, max_diff_bytes: int | None = None
) -> Frame:
    """Decode one frame, or raise a ``ProtocolError`` subclass saying what is wrong.

    ``max_diff_bytes`` (default ``max_bytes``) is the larger limit of diff frames,
    which carry up to a whole document.
    """
    largest = max(max_bytes, max_diff_bytes or 0)
    if len(data) > largest:
        raise OversizedFrameError(f"frame of {len(data)} bytes is over the {largest} limit")
    frame = _decode(data, max_docs)
    if len(data) > max_bytes and not isinstance(frame, Diff):
        raise OversizedFrameError(
            f"{type(frame).__name__.lower()} frame of {len(data)} bytes is over the "
            f"{max_bytes} limit"
        )
    return frame


def _decode(data: bytes, max_docs: int) -> Frame:
    try:
        # raw=False keeps str and bytes apart; strict_map_key refuses non-str keys.
        body = msgpack.unpackb(data, raw=False, strict_map_key=True, use_list=True)
    except (ValueError, msgpack.UnpackException, TypeError) as exc:
        raise MalformedFrameError(f"frame is not valid msgpack: {exc}") from None
    if not isinstance(body, dict):
        raise MalformedFrameError("frame is not a msgpack map")
    kind = body.get("t")
    if kind == "hello":
        _fields(body, "versions", "node", "cluster")
        versions = body["versions"]
        if (
            not isinstance(versions, list)
            or not 0 < len(versions) <= 16
            or not all(type(v) is int and v > 0 for v in versions)
        ):
            raise MalformedFrameError("hello.versions must be a list of positive integers")
        return Hello(tuple(versions), _id(body, "node"), _id(body, "cluster"))
    if kind == "svs":
        _fields(body, "docs", "reply")
        docs = body["docs"]
        if not isinstance(docs, dict):
            raise MalformedFrameError("svs.docs must be a map")
        if len(docs) > max_docs:
            raise RateLimitedError(f"svs names {len(docs)} documents, over the {max_docs} limit")
        for name, sv in docs.items():
            _check_doc(name)
            if not isinstance(sv, bytes):
                raise MalformedFrameError("svs.docs values must be bytes")
        if not isinstance(body["reply"], bool):
            raise MalformedFrameError("svs.reply must be a boolean")
        return StateVectors(docs, body["reply"])
    if kind == "diff":
        if "collected" in body:
            _fields(body, "doc", "update", "collected")
        else:
            _fields(body, "doc", "update")
        _check_doc(body["doc"])
        if not isinstance(body["update"], bytes):
            raise MalformedFrameError("diff.update must be bytes")
        record = None
        if "collected" in body:
            inner = body["collected"]
            if not isinstance(inner, dict) or inner.keys() != {"ranges", "rehung", "floor"}:
                raise MalformedFrameError(
                    "diff.collected must be a map of exactly ranges, rehung and floor"
                )
            record = _record(body["doc"], inner)
        return Diff(body["doc"], body["update"], record)
    if kind == "diff_part":
        _fields(body, "doc", "index", "count", "bytes")
        _check_doc(body["doc"])
        index, count = body["index"], body["count"]
        if not (type(index) is int and type(count) is int and 0 <= index < count <= MAX_PARTS):
            raise MalformedFrameError(f"diff_part needs integers 0 <= index < count <= {MAX_PARTS}")
        if not isinstance(body["bytes"], bytes):
            raise MalformedFrameError("diff_part.bytes must be bytes")
        return DiffPart(body["doc"], index, count, body["bytes"])
    if kind == "push":
        _fields(body, "updates")
        items = body["updates"]
        if not isinstance(items, list) or not items:
            raise MalformedFrameError("push.updates must be a non-empty list")
        updates = []
        for item in items:
            if not (isinstance(item, list) and len(item) == 2 and isinstance(item[1], bytes)):
                raise MalformedFrameError("push.updates items must be [doc, bytes]")
            _check_doc(item[0])
            updates.append((item[0], item[1]))
        return Push(tuple(updates))
    if kind == "synced":
        _fields(body)
        return Synced()
    if kind == "peers":
        _fields(body, "nodes")
        nodes = body["nodes"]
        if not isinstance(nodes, list) or len(nodes) > MAX_PEERS:
            raise MalformedFrameError(f"peers.nodes must be a list of at most {MAX_PEERS} ids")
        for node in nodes:
            if not isinstance(node, str) or not _ID.fullmatch(node):
                raise MalformedFrameError(f"peers.nodes items must match {_ID.pattern}")
        return Peers(tuple(nodes))
    if kind == "collected":
        _fields(body, "doc", "ranges", "rehung", "floor")
        _check_doc(body["doc"])
        return _record(body["doc"], body)
    if kind == "reports":
        _fields(body, "members", "forgotten")
        forgotten = body["forgotten"]
        if (
            not isinstance(forgotten, list)
            or len(forgotten) > MAX_PEERS
            or not all(type(m) is int and 0 <= m < 1 << 53 for m in forgotten)
        ):
            raise MalformedFrameError(
                f"reports.forgotten must be a list of at most {MAX_PEERS} replica ids"
            )
        return Reports(_members(body["members"], max_docs), tuple(forgotten))
    if kind == "about":
        _fields(body, "now", "replica")
        now, replica = body["now"], body["replica"]
        if not (type(now) is float and 0.0 <= now < MAX_ABOUT_TIME):
            raise MalformedFrameError("about.now must be a float of Unix seconds")
        if not (type(replica) is int and 0 <= replica < 1 << 53):
            raise MalformedFrameError("about.replica must be a replica id (0 to 2**53)")
        return About(now, replica)
    raise MalformedFrameError(f"unknown frame type {kind!r}")


# Most clients one reported state vector may list.
MAX_SV_CLIENTS = 65536


# Most numbers one collected frame's runs may hold (a sender splits larger ones).
MAX_RUN_NUMBERS = 1 << 21


def _record(doc: str, body: dict[str, Any]) -> Collected:
    """The record fields of a collected frame or of a diff's ``collected``."""
    floor = body["floor"]
    if not _uint_list(floor, 2 * MAX_SV_CLIENTS) or len(floor) % 2:
        raise MalformedFrameError("collected.floor must be a flat [client, clock, ...] list")
    return Collected(
        doc,
        _runs(body["ranges"], "ranges"),
        _runs(body["rehung"], "rehung"),
        dict(zip(floor[0::2], floor[1::2], strict=True)),
    )


def _uint_list(value: object, limit: int) -> bool:
    return (
        isinstance(value, list)
        and len(value) <= limit
        and all(type(x) is int and 0 <= x < 1 << 53 for x in value)
    )


def _runs(items: object, name: str) -> dict[int, list[int]]:
    """Client -> flat [start, end, ...] with start < end, from [[client, [...]], ...]."""
    if not isinstance(items, list) or len(items) > MAX_SV_CLIENTS:
        raise MalformedFrameError(f"collected.{name} must be a list of [client, runs]")
    out: dict[int, list[int]] = {}
    total = 0
    for item in items:
        if not (isinstance(item, list) and len(item) == 2 and _uint_list([item[0]], 1)):
            raise MalformedFrameError(f"collected.{name} items must be [client, runs]")
        runs = item[1]
        total += len(runs) if isinstance(runs, list) else 0
        if (
            not _uint_list(runs, MAX_RUN_NUMBERS)
            or len(runs) % 2
            or total > MAX_RUN_NUMBERS
            or any(runs[i] >= runs[i + 1] for i in range(0, len(runs), 2))
        ):
            raise MalformedFrameError(
                f"collected.{name} runs must be a flat [start, end, ...] list with start < end"
            )
        out[item[0]] = runs
    return out


def _members(items: object, max_docs: int) -> dict[int, dict[str, dict[int, int]]]:
    if not isinstance(items, list) or len(items) > MAX_PEERS:
        raise MalformedFrameError(f"reports.members must be a list of at most {MAX_PEERS}")
    out: dict[int, dict[str, dict[int, int]]] = {}
    for item in items:
        if not (
            isinstance(item, list)
            and len(item) == 2
            and type(item[0]) is int
            and 0 <= item[0] < 1 << 53
            and isinstance(item[1], dict)
        ):
            raise MalformedFrameError("reports.members items must be [replica id, {doc: sv}]")
        if len(item[1]) > max_docs:
            raise RateLimitedError(f"a report names over {max_docs} documents")
        docs: dict[str, dict[int, int]] = {}
        for doc, flat in item[1].items():
            _check_doc(doc)
            if (
                not isinstance(flat, list)
                or len(flat) % 2
                or len(flat) > 2 * MAX_SV_CLIENTS
                or not all(type(x) is int and 0 <= x < 1 << 53 for x in flat)
            ):
                raise MalformedFrameError(
                    "a reported state vector must be a flat list [client, clock, ...] of "
                    "non-negative integers"
                )
            docs[doc] = dict(zip(flat[0::2], flat[1::2], strict=True))
        out[item[0]] = docs
    return out


def negotiate(ours: tuple[int, ...], theirs: tuple[int, ...]) -> int | None:
    """The highest protocol version both sides speak, or None."""
    common = set(ours) & set(theirs)
    return max(common) if common else None


def _fields(body: dict[str, Any], *names: str) -> None:
    expected = {"t", *names}
    if body.keys() != expected:
        missing = sorted(expected - body.keys())
        extra = sorted(body.keys() - expected)
        raise MalformedFrameError(
            f"{body['t']} frame: missing fields {missing}, unexpected fields {extra}"
        )


def _id(body: dict[str, Any], name: str) -> str:
    value = body[name]
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise MalformedFrameError(f"hello.{name} must match {_ID.pattern}")
    return value


def _check_doc(name: object) -> None:
    # The store's one name rule, checked on the wire too so a peer cannot make us
    # even try to open a document with a hostile name.
    if not is_doc_name(name):
        shown = name[:80] if isinstance(name, str) else name
        raise MalformedFrameError(f"document name {shown!r}: use {DOC_NAME_RULE}")
