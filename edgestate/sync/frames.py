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

The frame dataclasses, versions and limits live in ``frame_types`` and the
decoder's field checks in ``frame_fields``; this module is the codec and
re-exports both (import frames from here).
"""

from __future__ import annotations

from typing import Any

import msgpack

from edgestate.errors import (
    MalformedFrameError,
    OversizedFrameError,
    RateLimitedError,
)
from edgestate.sync.frame_fields import (
    ID_PATTERN,
    MAX_RUN_NUMBERS,
    MAX_SV_CLIENTS,
    check_doc,
    check_fields,
    id_field,
    members_field,
    record_fields,
)
from edgestate.sync.frame_types import (
    ABOUT_VERSION,
    MAX_ABOUT_TIME,
    MAX_PARTS,
    MAX_PEERS,
    PARTS_VERSION,
    PROTOCOL_VERSIONS,
    RECORD_IN_DIFF_VERSION,
    REPORTS_VERSION,
    About,
    Collected,
    Diff,
    DiffPart,
    Frame,
    Hello,
    Peers,
    Push,
    Reports,
    StateVectors,
    Synced,
)

__all__ = [
    "ABOUT_VERSION",
    "MAX_ABOUT_TIME",
    "MAX_PARTS",
    "MAX_PEERS",
    "MAX_RUN_NUMBERS",
    "MAX_SV_CLIENTS",
    "PARTS_VERSION",
    "PROTOCOL_VERSIONS",
    "RECORD_IN_DIFF_VERSION",
    "REPORTS_VERSION",
    "About",
    "Collected",
    "Diff",
    "DiffPart",
    "Frame",
    "Hello",
    "Peers",
    "Push",
    "Reports",
    "StateVectors",
    "Synced",
    "decode",
    "encode",
    "negotiate",
]


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
        check_fields(body, "versions", "node", "cluster")
        versions = body["versions"]
        if (
            not isinstance(versions, list)
            or not 0 < len(versions) <= 16
            or not all(type(v) is int and v > 0 for v in versions)
        ):
            raise MalformedFrameError("hello.versions must be a list of positive integers")
        return Hello(tuple(versions), id_field(body, "node"), id_field(body, "cluster"))
    if kind == "svs":
        check_fields(body, "docs", "reply")
        docs = body["docs"]
        if not isinstance(docs, dict):
            raise MalformedFrameError("svs.docs must be a map")
        if len(docs) > max_docs:
            raise RateLimitedError(f"svs names {len(docs)} documents, over the {max_docs} limit")
        for name, sv in docs.items():
            check_doc(name)
            if not isinstance(sv, bytes):
                raise MalformedFrameError("svs.docs values must be bytes")
        if not isinstance(body["reply"], bool):
            raise MalformedFrameError("svs.reply must be a boolean")
        return StateVectors(docs, body["reply"])
    if kind == "diff":
        if "collected" in body:
            check_fields(body, "doc", "update", "collected")
        else:
            check_fields(body, "doc", "update")
        check_doc(body["doc"])
        if not isinstance(body["update"], bytes):
            raise MalformedFrameError("diff.update must be bytes")
        record = None
        if "collected" in body:
            inner = body["collected"]
            if not isinstance(inner, dict) or inner.keys() != {"ranges", "rehung", "floor"}:
                raise MalformedFrameError(
                    "diff.collected must be a map of exactly ranges, rehung and floor"
                )
            record = record_fields(body["doc"], inner)
        return Diff(body["doc"], body["update"], record)
    if kind == "diff_part":
        check_fields(body, "doc", "index", "count", "bytes")
        check_doc(body["doc"])
        index, count = body["index"], body["count"]
        if not (type(index) is int and type(count) is int and 0 <= index < count <= MAX_PARTS):
            raise MalformedFrameError(f"diff_part needs integers 0 <= index < count <= {MAX_PARTS}")
        if not isinstance(body["bytes"], bytes):
            raise MalformedFrameError("diff_part.bytes must be bytes")
        return DiffPart(body["doc"], index, count, body["bytes"])
    if kind == "push":
        check_fields(body, "updates")
        items = body["updates"]
        if not isinstance(items, list) or not items:
            raise MalformedFrameError("push.updates must be a non-empty list")
        updates = []
        for item in items:
            if not (isinstance(item, list) and len(item) == 2 and isinstance(item[1], bytes)):
                raise MalformedFrameError("push.updates items must be [doc, bytes]")
            check_doc(item[0])
            updates.append((item[0], item[1]))
        return Push(tuple(updates))
    if kind == "synced":
        check_fields(body)
        return Synced()
    if kind == "peers":
        check_fields(body, "nodes")
        nodes = body["nodes"]
        if not isinstance(nodes, list) or len(nodes) > MAX_PEERS:
            raise MalformedFrameError(f"peers.nodes must be a list of at most {MAX_PEERS} ids")
        for node in nodes:
            if not isinstance(node, str) or not ID_PATTERN.fullmatch(node):
                raise MalformedFrameError(f"peers.nodes items must match {ID_PATTERN.pattern}")
        return Peers(tuple(nodes))
    if kind == "collected":
        check_fields(body, "doc", "ranges", "rehung", "floor")
        check_doc(body["doc"])
        return record_fields(body["doc"], body)
    if kind == "reports":
        check_fields(body, "members", "forgotten")
        forgotten = body["forgotten"]
        if (
            not isinstance(forgotten, list)
            or len(forgotten) > MAX_PEERS
            or not all(type(m) is int and 0 <= m < 1 << 53 for m in forgotten)
        ):
            raise MalformedFrameError(
                f"reports.forgotten must be a list of at most {MAX_PEERS} replica ids"
            )
        return Reports(members_field(body["members"], max_docs), tuple(forgotten))
    if kind == "about":
        check_fields(body, "now", "replica")
        now, replica = body["now"], body["replica"]
        if not (type(now) is float and 0.0 <= now < MAX_ABOUT_TIME):
            raise MalformedFrameError("about.now must be a float of Unix seconds")
        if not (type(replica) is int and 0 <= replica < 1 << 53):
            raise MalformedFrameError("about.replica must be a replica id (0 to 2**53)")
        return About(now, replica)
    raise MalformedFrameError(f"unknown frame type {kind!r}")


def negotiate(ours: tuple[int, ...], theirs: tuple[int, ...]) -> int | None:
    """The highest protocol version both sides speak, or None."""
    common = set(ours) & set(theirs)
    return max(common) if common else None
