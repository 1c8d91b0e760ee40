"""Garbage collection of overwritten map entries: what keeps a document's disk bounded.

Yjs never drops the item a map overwrite replaced. Other replicas may still name
it as the ``origin`` of a concurrent write, so it stays as a ~16-byte tombstone
forever and a document's snapshot grows with every overwrite (measured: 745x the
live data after 1M overwrites of 1,000 keys).

This module rewrites a document's full-state v1 update so that, for every map key
whose whole history is *stable* (every item of it is covered by ``frontier``, a
state vector every cluster member is known to have reached; see
``edgestate.sync.frontier`` for how the sync layer proves that), only two items
stay: the live one and the key's first item (its "root", the origin-less item the
live one descends from). Every other item of the key becomes part of a ``GC``
range, which Yjs encodes as one length per run of clocks. The live item's origin
is pointed at the root. Clocks, client ids and so the state vector are unchanged.

Why keeping the root is enough for replicas that never garbage-collected to agree
with ones that did: a map's value is its rightmost item. Items written after the
frontier descend from the live item (every member had it) and land to its right on
both. An origin-less item (a fresh replica's first write of the key) lands after
every origin-less item with a smaller client id and its descendants; it ends up
rightmost on a full history exactly when its client id exceeds the live item's
root's, which is the comparison the collected history makes too.

What a collected history cannot do is take an item whose origin was collected:
only a replica that missed the stable frontier (a member that was forgotten, an
offline Yjs client) can send one. :func:`stale_reference` finds those so the store
refuses them, and :func:`partial_replica` spots a replica whose partial copy of the
collected history would integrate our rewritten items differently.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field

import msgpack

from edgestate.store.updates import read_varuint, skip_any, skip_bytes

# Struct content refs (lib0 / Yjs v1 encoding).
_GC = 0
_DELETED = 1
_JSON = 2
_BINARY = 3
_STRING = 4
_TYPE = 7
_ANY = 8
_DOC = 9
_SKIP = 10

_ORIGIN = 0x80
_RIGHT_ORIGIN = 0x40
_PARENT_SUB = 0x20

Id = tuple[int, int]


@dataclass(slots=True)
class _Struct:
    client: int
    clock: int
    length: int
    ref: int
    start: int  # byte span of the struct in the source update
    end: int
    content: int  # where its content bytes start
    origin: Id | None = None
    right: Id | None = None
    parent: str | Id | None = None  # written out only when the item has no origins
    sub: str | None = None


@dataclass(slots=True)
class Ranges:
    """Per client, sorted disjoint [start, end) clock ranges."""

    by_client: dict[int, list[tuple[int, int]]] = field(default_factory=dict)

    def add(self, client: int, start: int, end: int) -> None:
        runs = self.by_client.setdefault(client, [])
        if runs and runs[-1][1] == start:
            runs[-1] = (runs[-1][0], end)
        else:
            runs.append((start, end))

    def normalize(self) -> Ranges:
        """Sorted, merged copy."""
        out = Ranges()
        for client, runs in self.by_client.items():
            for start, end in sorted(runs):
                merged = out.by_client.setdefault(client, [])
                if merged and start <= merged[-1][1]:
                    merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
                else:
                    merged.append((start, end))
        return out

    def contains(self, client: int, clock: int) -> bool:
        runs = self.by_client.get(client)
        if not runs:
            return False
        i = bisect_right(runs, (clock, 1 << 64)) - 1
        return i >= 0 and runs[i][0] <= clock < runs[i][1]

    def covers(self, client: int, clock: int, length: int) -> bool:
        """True if [clock, clock + length) lies inside one range."""
        runs = self.by_client.get(client)
        if not runs:
            return False
        i = bisect_right(runs, (clock, 1 << 64)) - 1
        return i >= 0 and runs[i][0] <= clock and clock + length <= runs[i][1]

    def union(self, other: Ranges) -> Ranges:
        both = Ranges({c: list(r) for c, r in self.by_client.items()})
        for client, runs in other.by_client.items():
            both.by_client.setdefault(client, []).extend(runs)
        return both.normalize()

    def ends(self) -> dict[int, int]:
        """client -> end of its last range."""
        return {c: runs[-1][1] for c, runs in self.by_client.items() if runs}

    def to_wire(self) -> dict[int, list[int]]:
        return {c: [x for run in runs for x in run] for c, runs in self.by_client.items()}

    @classmethod
    def from_wire(cls, raw: dict[int, list[int]]) -> Ranges:
        return cls({int(c): list(zip(v[0::2], v[1::2], strict=True)) for c, v in raw.items()})


@dataclass(frozen=True, slots=True)
class Collected:
    """Result of :func:`collect`."""

    update: bytes  # the rewritten full state
    ranges: Ranges  # clocks turned into GC by this pass
    keys: frozenset[tuple[str, str]]  # (root map, key) whose history was collected
    items_before: int
    items_after: int


def _read_id(buf: bytes, pos: int) -> tuple[Id, int]:
    client, pos = read_varuint(buf, pos)
    clock, pos = read_varuint(buf, pos)
    return (client, clock), pos


def _read_string(buf: bytes, pos: int) -> tuple[str, int]:
    end = skip_bytes(buf, pos)
    _, start = read_varuint(buf, pos)
    return buf[start:end].decode("utf-8", "surrogatepass"), end


def _content_length(buf: bytes, ref: int, pos: int) -> tuple[int, int]:
    """(clock length, end of content) of an item's content starting at ``pos``."""
    if ref == _DELETED:
        length, end = read_varuint(buf, pos)
        return length, end
    if ref == _JSON:
        count, pos = read_varuint(buf, pos)
        for _ in range(count):
            pos = skip_bytes(buf, pos)
        return count, pos
    if ref == _STRING:
        text, end = _read_string(buf, pos)
        return len(text.encode("utf-16-le", "surrogatepass")) // 2, end
    if ref == _ANY:
        count, pos = read_varuint(buf, pos)
        for _ in range(count):
            pos = skip_any(buf, pos)
        return count, pos
    if ref in (_BINARY, 5):  # binary, embed
        return 1, skip_bytes(buf, pos)
    if ref == 6:  # format
        return 1, skip_bytes(buf, skip_bytes(buf, pos))
    if ref == _TYPE:
        type_ref, pos = read_varuint(buf, pos)
        return 1, (skip_bytes(buf, pos) if type_ref in (3, 5) else pos)
    if ref == _DOC:
        return 1, skip_any(buf, skip_bytes(buf, pos))
    raise ValueError(f"unknown struct content {ref}")


def parse(update: bytes) -> tuple[dict[int, list[_Struct]], int]:
    """Every struct of a v1 update by client, and where its delete set starts."""
    clients: dict[int, list[_Struct]] = {}
    count, pos = read_varuint(update, 0)
    for _ in range(count):
        n, pos = read_varuint(update, pos)
        client, pos = read_varuint(update, pos)
        clock, pos = read_varuint(update, pos)
        structs = clients.setdefault(client, [])
        for _ in range(n):
            start = pos
            info = update[pos]
            pos += 1
            ref = info & 0x1F
            if ref in (_GC, _SKIP):
                length, pos = read_varuint(update, pos)
                structs.append(_Struct(client, clock, length, ref, start, pos, pos))
                clock += length
                continue
            s = _Struct(client, clock, 0, ref, start, 0, 0)
            if info & _ORIGIN:
                s.origin, pos = _read_id(update, pos)
            if info & _RIGHT_ORIGIN:
                s.right, pos = _read_id(update, pos)
            if not info & (_ORIGIN | _RIGHT_ORIGIN):
                named, pos = read_varuint(update, pos)
                if named:
                    s.parent, pos = _read_string(update, pos)
                else:
                    s.parent, pos = _read_id(update, pos)
                if info & _PARENT_SUB:
                    s.sub, pos = _read_string(update, pos)
            s.content = pos
            s.length, pos = _content_length(update, ref, pos)
            s.end = pos
            structs.append(s)
            clock += s.length
    return clients, pos


def read_delete_set(update: bytes, pos: int) -> Ranges:
    """The delete set that ends a v1 update, starting at ``pos``."""
    ds = Ranges()
    count, pos = read_varuint(update, pos)
    for _ in range(count):
        client, pos = read_varuint(update, pos)
        n, pos = read_varuint(update, pos)
        for _ in range(n):
            clock, pos = read_varuint(update, pos)
            length, pos = read_varuint(update, pos)
            ds.by_client.setdefault(client, []).append((clock, clock + length))
    return ds.normalize()


class _Index:
    """Find the struct holding an id; resolve each item's (root map, key)."""

    def __init__(self, clients: dict[int, list[_Struct]]) -> None:
        self.clients = clients
        self.starts = {c: [s.clock for s in structs] for c, structs in clients.items()}
        self._keys: dict[Id, tuple[str, str] | None] = {}

    def find(self, ident: Id) -> _Struct | None:
        client, clock = ident
        starts = self.starts.get(client)
        if not starts:
            return None
        i = bisect_right(starts, clock) - 1
        if i < 0:
            return None
        s = self.clients[client][i]
        return s if clock < s.clock + s.length else None

    def key_of(self, s: _Struct) -> tuple[str, str] | None:
        """(root map name, key) of a root-map entry; None for anything else."""
        chain: list[_Struct] = []
        found: tuple[str, str] | None = None
        cur: _Struct | None = s
        # Iterative: a key overwritten a million times has a million-long chain.
        while cur is not None:
            ident = (cur.client, cur.clock)
            if ident in self._keys:
                found = self._keys[ident]
                break
            chain.append(cur)
            if cur.ref in (_GC, _SKIP):
                found = None
                break
            if cur.origin is None and cur.right is None:
                found = (
                    (cur.parent, cur.sub)
                    if isinstance(cur.parent, str) and cur.sub is not None
                    else None
                )
                break
            ref = cur.origin if cur.origin is not None else cur.right
            assert ref is not None
            cur = self.find(ref)
        for item in chain:
            self._keys[(item.client, item.clock)] = found
        return found


def _last(s: _Struct) -> Id:
    return (s.client, s.clock + s.length - 1)


def _write_varuint(out: bytearray, value: int) -> None:
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def collect(snapshot: bytes, frontier: dict[int, int]) -> Collected | None:
    """Rewrite ``snapshot`` (a full-state v1 update) collecting stable overwrites.

    None if there is nothing to collect. Raises ``ValueError`` on bytes it cannot
    parse (the caller keeps the snapshot as it is).
    """
    clients, ds_start = parse(snapshot)
    deleted = read_delete_set(snapshot, ds_start)
    index = _Index(clients)
    by_key: dict[tuple[str, str], list[_Struct]] = {}
    items = 0
    for structs in clients.values():
        for s in structs:
            if s.ref in (_GC, _SKIP):
                continue
            items += 1
            key = index.key_of(s)
            if key is not None:
                by_key.setdefault(key, []).append(s)

    gc: set[Id] = set()
    rewrite: dict[Id, Id] = {}  # kept item -> its nearest kept ancestor's last id
    keys: set[tuple[str, str]] = set()

    def stable(s: _Struct) -> bool:
        return s.clock + s.length <= frontier.get(s.client, 0)

    for key, chain in by_key.items():
        if len(chain) < 3 or any(s.right is not None or s.ref in (_TYPE, _DOC) for s in chain):
            # Map writes never set a right origin; nested types have children
            # naming them as parent. Either way: not ours to rewrite.
            continue
        parent: dict[Id, _Struct] = {}
        children: dict[Id, list[_Struct]] = {}
        branched: set[Id] = set()  # structs something hangs off mid-run
        for s in chain:
            if s.origin is not None:
                p = index.find(s.origin)
                if p is None:
                    break
                pid = (p.client, p.clock)
                parent[(s.client, s.clock)] = p
                if s.origin == _last(p):
                    children.setdefault(pid, []).append(s)
                else:
                    # A merged run of deleted entries is one struct but several
                    # positions; a child of an inner one must keep the run whole.
                    branched.add(pid)
        else:
            dead = {
                ident
                for s in chain
                if s.origin is not None
                and stable(s)
                and (s.ref == _DELETED or deleted.covers(s.client, s.clock, s.length))
                and (ident := (s.client, s.clock)) not in branched
                and len(kids := children.get(ident, [])) == 1
                and stable(kids[0])
                # ...and an only child: what takes its place keeps its rank among
                # siblings (Yjs orders concurrent siblings by client id).
                and s.origin == _last(parent[ident])
                and len(children[(parent[ident].client, parent[ident].clock)]) == 1
            }
            if not dead:
                continue
            gc |= dead
            keys.add(key)
            for s in chain:
                ident = (s.client, s.clock)
                top = parent.get(ident)
                if ident in dead or top is None or (top.client, top.clock) not in dead:
                    continue
                # Hang it where the collected segment above it hung.
                while (up := parent[(top.client, top.clock)]) is not None and (
                    up.client,
                    up.clock,
                ) in dead:
                    top = up
                assert top.origin is not None
                rewrite[ident] = top.origin
    if not gc:
        return None

    out = bytearray()
    ranges = Ranges()
    _write_varuint(out, len(clients))
    after = 0
    # Yjs writes clients in descending order; decoders accept any order.
    for client in sorted(clients, reverse=True):
        body = bytearray()
        n = 0
        run = 0  # length of the GC run being built
        for s in clients[client]:
            ident = (s.client, s.clock)
            if ident in gc or s.ref == _GC:
                if ident in gc:
                    ranges.add(client, s.clock, s.clock + s.length)
                run += s.length
                continue
            if run:
                body.append(_GC)
                _write_varuint(body, run)
                n += 1
                run = 0
            n += 1
            if s.ref != _SKIP:
                after += 1
            new_origin = rewrite.get(ident)
            if new_origin is None:
                body += snapshot[s.start : s.end]
                continue
            # A kept item re-pointed past collected ones: origin written, so no parent.
            body.append(s.ref | _ORIGIN | _PARENT_SUB)
            _write_varuint(body, new_origin[0])
            _write_varuint(body, new_origin[1])
            body += snapshot[s.content : s.end]
        if run:
            body.append(_GC)
            _write_varuint(body, run)
            n += 1
        _write_varuint(out, n)
        _write_varuint(out, client)
        _write_varuint(out, clients[client][0].clock if clients[client] else 0)
        out += body
    out += snapshot[ds_start:]
    return Collected(bytes(out), ranges.normalize(), frozenset(keys), items, after)


def stale_reference(update: bytes, collected: Ranges, known: dict[int, int]) -> str | None:
    """Why ``update`` cannot be integrated into a collected history, or None.

    An item we do not have yet (not covered by ``known``, our state vector) is
    refused if its origin or right origin lies in a collected range: it was
    written by a replica that had not seen the stable frontier, and Yjs would
    silently turn it into a GC struct (the write would vanish here and survive on
    replicas that kept the history).
    """
    if not collected.by_client:
        return None
    clients, _ = parse(update)
    for structs in clients.values():
        for s in structs:
            if s.ref in (_GC, _SKIP) or s.clock + s.length <= known.get(s.client, 0):
                continue
            for ref in (s.origin, s.right):
                if ref is not None and collected.contains(*ref):
                    return (
                        f"item {s.client}:{s.clock} builds on {ref[0]}:{ref[1]}, an overwritten "
                        "entry every cluster member had already superseded and this node has "
                        "garbage-collected"
                    )
    return None


def partial_replica(remote: dict[int, int], collected: Ranges) -> str | None:
    """Why a replica at state vector ``remote`` cannot take our collected history.

    One that holds none of the collected clients' items (a fresh replica) or all
    of them up to the collected ranges' ends (every member) is fine. One in
    between holds items our rewrite dropped or re-pointed, and would integrate
    the rewritten ones differently.
    """
    ends = collected.ends()
    if not ends:
        return None
    if all(remote.get(c, 0) == 0 for c in ends) or all(
        remote.get(c, 0) >= end for c, end in ends.items()
    ):
        return None
    behind = sorted(
        c for c, end in ends.items() if 0 < remote.get(c, 0) < end or remote.get(c, 0) == 0
    )
    return (
        f"the replica holds part of a history this node has garbage-collected (clients "
        f"{behind[:5]} are behind the collected frontier); it must drop its copy of the "
        "document and sync it afresh"
    )


@dataclass(slots=True)
class GcState:
    """What a document's collection knows, persisted beside its snapshot."""

    # Set by the sync layer: a state vector every cluster member has reached.
    frontier: dict[int, int] | None = None
    # SOLO mode: our state vector at the previous compaction (the next frontier).
    previous: dict[int, int] | None = None
    # Every clock range collected so far: what stale_reference/partial_replica check.
    ranges: Ranges = field(default_factory=Ranges)
    collected_items: int = 0

    def pack(self) -> bytes:
        return bytes(
            msgpack.packb(
                {
                    "frontier": self.frontier,
                    "previous": self.previous,
                    "ranges": self.ranges.to_wire(),
                    "collected": self.collected_items,
                }
            )
        )

    @classmethod
    def unpack(cls, raw: bytes) -> GcState:
        body = msgpack.unpackb(raw, strict_map_key=False)
        return cls(
            frontier=body["frontier"],
            previous=body["previous"],
            ranges=Ranges.from_wire(body["ranges"]),
            collected_items=body["collected"],
        )
