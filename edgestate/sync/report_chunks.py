"""Reports and collection records cut into frames within the receiver's decoder limits.

Pure functions (no store, no loop): ``chunk_reports`` for member reports,
``collected_frames`` for a document's collection record. ``membership`` sends
what they return.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from edgestate.store import GcState
from edgestate.sync import frames
from edgestate.sync.frames import Collected

MemberReports = Mapping[int, Mapping[str, Mapping[int, int]]]

# Documents one member's part of a reports frame names at most: far under the
# receiver's ``max_documents_per_frame`` (100,000 by default), which an empty
# vector's small cost alone would not keep a frame under.
REPORT_DOCS_PER_FRAME = 10_000


def chunk_reports(
    reports: MemberReports,
    local_only: Collection[str],
    numbers_per_frame: int,
    *,
    max_members: int = frames.MAX_PEERS,
    max_docs: int = REPORT_DOCS_PER_FRAME,
    max_clients: int = frames.MAX_SV_CLIENTS,
) -> list[dict[int, dict[str, dict[int, int]]]]:
    """Member reports for peers, in frames within every limit of the receiver's
    decoder: at most about ``numbers_per_frame`` numbers (a document name,
    repeated per member, counts 8), ``max_members`` members, ``max_docs``
    documents per member and ``max_clients`` clients per state vector.

    Found in hardening: a document written by more than 65,536 Yjs clients made
    a vector the peer refused, and it closed every link. A vector is split by
    client across frames; reports merge by componentwise maximum, so any split
    is as good as one frame. Members with nothing to report still appear (a
    member is news even before it holds a document). Local-only documents never
    leave the node. Always at least one chunk."""
    chunks: list[dict[int, dict[str, dict[int, int]]]] = []
    current: dict[int, dict[str, dict[int, int]]] = {}
    size = 0
    seen: set[int] = set()
    docs = sorted({d for r in reports.values() for d in r} - set(local_only))
    members = sorted(reports)
    for doc in docs:
        for member in members:
            vector = reports[member].get(doc)
            if vector is None:
                continue
            if len(vector) <= max_clients:  # most do: a C copy, no sort
                parts = [dict(vector)]
            else:
                items = sorted(vector.items())
                parts = [
                    dict(items[i : i + max_clients]) for i in range(0, len(items), max_clients)
                ]
            for part in parts:
                cost = 2 * len(part) + 8
                mine = current.get(member)
                full = (
                    size + cost > numbers_per_frame
                    or (mine is None and len(current) >= max_members)
                    or (mine is not None and (doc in mine or len(mine) >= max_docs))
                )
                if current and full:
                    chunks.append(current)
                    current, size = {}, 0
                current.setdefault(member, {})[doc] = part
                seen.add(member)
                size += cost
    for member in members:
        if member not in seen:
            if len(current) >= max_members:
                chunks.append(current)
                current = {}
            current[member] = {}
    if current or not chunks:
        chunks.append(current)
    return chunks


def collected_frames(
    record: GcState | None, doc: str, max_numbers: int, max_clients: int
) -> list[Collected]:
    """``doc``'s collection record as frames of at most ``max_numbers`` run
    numbers and ``max_clients`` clients each (the receiver's decoder limits:
    found in review, a record of many short-lived Yjs clients was one frame the
    peer refused)."""
    if record is None or not record.ranges.by_client:
        return []
    out: list[Collected] = []
    for field_name, runs in (("ranges", record.ranges), ("rehung", record.rehung)):
        chunk: dict[int, list[int]] = {}
        size = 0
        for client, flat in runs.to_wire().items():
            for i in range(0, len(flat), max_numbers):
                part = flat[i : i + max_numbers]
                if chunk and (size + len(part) > max_numbers or len(chunk) >= max_clients):
                    out.append(_collected(doc, field_name, chunk))
                    chunk, size = {}, 0
                chunk.setdefault(client, []).extend(part)
                size += len(part)
        if chunk:
            out.append(_collected(doc, field_name, chunk))
    floor = sorted(record.floor.items())
    for i in range(0, len(floor), max_clients):
        out.append(Collected(doc, {}, {}, dict(floor[i : i + max_clients])))
    return out


def _collected(doc: str, field_name: str, runs: dict[int, list[int]]) -> Collected:
    if field_name == "ranges":
        return Collected(doc, runs, {}, {})
    return Collected(doc, {}, runs, {})
