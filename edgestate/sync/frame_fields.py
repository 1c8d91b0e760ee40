"""The field checks of the strict frame decoder: ids, document names, state
vectors, clock runs and member reports, each refused with a
``MalformedFrameError`` (or ``RateLimitedError`` for too many documents) that
names the field. Used by ``frames.decode``; limits beside their constants.
"""

from __future__ import annotations

import re
from typing import Any

from edgestate.errors import MalformedFrameError, RateLimitedError
from edgestate.store import DOC_NAME_RULE, is_doc_name
from edgestate.sync.frame_types import MAX_PEERS, Collected

# Node and cluster ids are hex fingerprints in TLS mode, short names in
# insecure mode.
ID_PATTERN = re.compile(r"[A-Za-z0-9_.:-]{1,128}")

# Most clients one reported state vector may list.
MAX_SV_CLIENTS = 65536
# Most numbers one collected frame's runs may hold (a sender splits larger ones).
MAX_RUN_NUMBERS = 1 << 21


def record_fields(doc: str, body: dict[str, Any]) -> Collected:
    """The record fields of a collected frame or of a diff's ``collected``."""
    floor = body["floor"]
    if not _uint_list(floor, 2 * MAX_SV_CLIENTS) or len(floor) % 2:
        raise MalformedFrameError("collected.floor must be a flat [client, clock, ...] list")
    return Collected(
        doc,
        runs_field(body["ranges"], "ranges"),
        runs_field(body["rehung"], "rehung"),
        dict(zip(floor[0::2], floor[1::2], strict=True)),
    )


def _uint_list(value: object, limit: int) -> bool:
    return (
        isinstance(value, list)
        and len(value) <= limit
        and all(type(x) is int and 0 <= x < 1 << 53 for x in value)
    )


def runs_field(items: object, name: str) -> dict[int, list[int]]:
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


def members_field(items: object, max_docs: int) -> dict[int, dict[str, dict[int, int]]]:
    """Replica id -> document -> state vector, from a reports frame's ``members``."""
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
            check_doc(doc)
            if (
                not isinstance(flat, list)
                or len(flat) % 2
                or len(flat) > 2 * MAX_SV_CLIENTS
                or not _wire_ints(flat)
            ):
                raise MalformedFrameError(
                    "a reported state vector must be a flat list [client, clock, ...] of "
                    "non-negative integers"
                )
            docs[doc] = dict(zip(flat[0::2], flat[1::2], strict=True))
        out[item[0]] = docs
    return out


def check_fields(body: dict[str, Any], *names: str) -> None:
    """Refuse a frame whose fields are not exactly ``t`` and ``names``."""
    expected = {"t", *names}
    if body.keys() != expected:
        missing = sorted(expected - body.keys())
        extra = sorted(body.keys() - expected)
        raise MalformedFrameError(
            f"{body['t']} frame: missing fields {missing}, unexpected fields {extra}"
        )


def id_field(body: dict[str, Any], name: str) -> str:
    """The hello's node or cluster id ``name``, checked against ``ID_PATTERN``."""
    value = body[name]
    if not isinstance(value, str) or not ID_PATTERN.fullmatch(value):
        raise MalformedFrameError(f"hello.{name} must match {ID_PATTERN.pattern}")
    return value


def check_doc(name: object) -> None:
    """Refuse a document name breaking the store's rule."""
    # The store's one name rule, checked on the wire too so a peer cannot make us
    # even try to open a document with a hostile name.
    if not is_doc_name(name):
        shown = name[:80] if isinstance(name, str) else name
        raise MalformedFrameError(f"document name {shown!r}: use {DOC_NAME_RULE}")


def _wire_ints(flat: list[object]) -> bool:
    """All plain ints in [0, 2**53): checked in C (types, then min and max), not
    per number in Python: reports carry N members x N clients at N nodes, and
    this check was most of their decoding (docs/mesh.md, where the CPU goes)."""
    if not flat:
        return True
    if set(map(type, flat)) != {int}:  # bool is an int subclass: refused here
        return False
    ints: list[int] = flat  # type: ignore[assignment]  # every one checked above
    return min(ints) >= 0 and max(ints) < 1 << 53
