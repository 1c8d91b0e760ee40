"""Garbage collection of overwritten map entries: what keeps a document's disk bounded.

Yjs never drops the item a map overwrite replaced. Other replicas may still name
it as the ``origin`` of a concurrent write, so it stays as a ~16-byte tombstone
forever and a document's snapshot grows with every overwrite (measured: 745x the
live data after 1M overwrites of 1,000 keys).

The items of one root-map key form a tree by origin: an overwrite's origin is
the item it replaced; the key's first writes (and a fresh replica's) have none
and are roots. :func:`collect` rewrites a full-state v1 update so that an item
becomes part of a ``GC`` range (Yjs encodes a run of clocks as one length) when

- it is *stable*, and so is its one child: covered by ``frontier``, a state
  vector every cluster member is known to have reached, late enough that no write
  naming it as origin can still be in flight (``edgestate.sync.frontier``);
- it is deleted, not a root, an only child hung at its parent's end, and has
  exactly one child.

Whatever hung below a collected run is re-hung where the run hung. So kept items
keep their relative order, siblings keep their ranks (Yjs orders concurrent
siblings by client id) and every root keeps its subtree. That is all the Yjs
integration of any later item looks at: a later overwrite descends from a kept
item; a fresh replica's origin-less write lands after each root with a smaller
client id and that root's whole subtree. A replica that collected and one that
kept everything therefore agree on every key. Two weaker rules (keep only root
and live item; drop the only-child condition) each diverged under the randomized
test in ``tests/store/test_gc.py``. Clocks, client ids and the state vector are
unchanged.

What a collected history cannot take is an item whose origin was collected:
only a replica that missed the frontier (a member that was forgotten, an offline
Yjs client) can send one. :func:`stale_reference` finds those so the store
refuses them, and :func:`partial_replica` spots a replica whose partial copy of
the collected history would integrate the re-hung items differently.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field

import msgpack

from edgestate.store.updates import content_span, read_varuint, skip_bytes

# Struct content refs (lib0 / Yjs v1 encoding).
_GC = 0
_DELETED = 1
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
    # Filled by collect(): the struct holding the origin, and who hangs off our end.
    up: _Struct | None = None
    kids: int = 0
    kid: _Struct | None = None
    branched: bool = False  # something hangs off an inner clock of this run


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

    def covers(self, client: int, clock: int, length: int = 1) -> bool:
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
class Rewrite:
    """Result of :func:`collect`."""

    update: bytes  # the rewritten full state
    ranges: Ranges  # clocks turned into GC by this pass
    rehung: Ranges  # the ids re-hung items now hang from (one clock each)
    items_before: int
    items_after: int


def _read_id(buf: bytes, pos: int) -> tuple[Id, int]:
    # Inlined one-byte fast path: this runs for nearly every struct.
    client = buf[pos]
    if client < 0x80:
        pos += 1
    else:
        client, pos = read_varuint(buf, pos)
    clock = buf[pos]
    if clock < 0x80:
        pos += 1
    else:
        clock, pos = read_varuint(buf, pos)
    return (client, clock), pos


def _read_string(buf: bytes, pos: int) -> tuple[str, int]:
    end = skip_bytes(buf, pos)
    _, start = read_varuint(buf, pos)
    return buf[start:end].decode("utf-8", "surrogatepass"), end


def parse(
    update: bytes, headers: list[tuple[int, int]] | None = None
) -> tuple[dict[int, list[_Struct]], int]:
    """Every struct of a v1 update by client, and where its delete set starts.

    ``headers``, if given, gets every client block's (client, first clock).
    """
    clients: dict[int, list[_Struct]] = {}
    buf = update
    count, pos = read_varuint(buf, 0)
    # Origin client ids are long varints (replica ids reach 2**53) drawn from a
    # few values: matching their encoded bytes beats decoding them every time
    # (a varint is prefix-free, so a byte-wise match is the same number).
    known: list[tuple[bytes, int]] = []
    for _ in range(count):
        n, pos = read_varuint(buf, pos)
        client, pos = read_varuint(buf, pos)
        clock, pos = read_varuint(buf, pos)
        if headers is not None:
            headers.append((client, clock))
        structs = clients.setdefault(client, [])
        append = structs.append
        for _ in range(n):
            start = pos
            info = buf[pos]
            pos += 1
            ref = info & 0x1F
            if ref == _GC or ref == _SKIP:
                length, pos = read_varuint(buf, pos)
                append(_Struct(client, clock, length, ref, start, pos, pos))
                clock += length
                continue
            s = _Struct(client, clock, 0, ref, start, 0, 0)
            if info & _ORIGIN:
                for raw, value in known:
                    if buf.startswith(raw, pos):
                        pos += len(raw)
                        other = value
                        break
                else:
                    other, end = read_varuint(buf, pos)
                    known.insert(0, (buf[pos:end], other))
                    del known[8:]
                    pos = end
                b = buf[pos]
                if b < 0x80:
                    s.origin = (other, b)
                    pos += 1
                else:
                    at, pos = read_varuint(buf, pos)
                    s.origin = (other, at)
            if info & _RIGHT_ORIGIN:
                s.right, pos = _read_id(buf, pos)
            if not info & 0xC0:
                named, pos = read_varuint(buf, pos)
                if named:
                    s.parent, pos = _read_string(buf, pos)
                else:
                    s.parent, pos = _read_id(buf, pos)
                if info & _PARENT_SUB:
                    s.sub, pos = _read_string(buf, pos)
            s.content = pos
            if ref == _DELETED:
                b = buf[pos]
                if b < 0x80:
                    s.length, pos = b, pos + 1
                else:
                    s.length, pos = read_varuint(buf, pos)
            elif ref == _ANY and buf[pos] == 1 and buf[pos + 1] == 116 and buf[pos + 2] < 0x80:
                # One Uint8Array shorter than 128 bytes: the common map value.
                s.length, pos = 1, pos + 3 + buf[pos + 2]
            else:
                s.length, pos = content_span(buf, ref, pos)
            s.end = pos
            append(s)
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
        # Most ids name a struct's first clock (map entries are one clock long).
        self.exact = {(s.client, s.clock): s for structs in clients.values() for s in structs}
        self._keys: dict[Id, tuple[str, str] | None] = {}

    def find(self, ident: Id) -> _Struct | None:
        s = self.exact.get(ident)
        if s is not None:
            return s
        client, clock = ident
        starts = self.starts.get(client)
        if not starts:
            return None
        i = bisect_right(starts, clock) - 1
        if i < 0:
            return None
        found = self.clients[client][i]
        return found if clock < found.clock + found.length else None

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


def collect(snapshot: bytes, frontier: dict[int, int]) -> Rewrite | None:
    """Rewrite ``snapshot`` (a full-state v1 update) collecting stable overwrites.

    In each root-map key's origin tree, an item is collected when it is stable,
    deleted, not a root, an only child, and has exactly one child, itself stable;
    whatever hung below a collected run is hung where the run hung. Kept items
    keep their relative order and every root keeps its subtree, which is what
    the integration of any later item depends on (see the module docstring).

    None if there is nothing to collect. Raises ``ValueError`` / ``IndexError``
    on bytes it cannot parse (the caller keeps the snapshot as it is).
    """
    clients, ds_start = parse(snapshot)
    deleted = read_delete_set(snapshot, ds_start)
    index = _Index(clients)
    find = index.find
    items: list[tuple[_Struct, tuple[str, str]]] = []
    excluded: set[tuple[str, str]] = set()
    for structs in clients.values():
        for s in structs:
            if s.ref == _GC or s.ref == _SKIP:
                continue
            key = index.key_of(s)
            if key is None:
                continue
            if s.right is not None or s.ref == _TYPE or s.ref == _DOC:
                # Map writes never set a right origin; nested types have
                # children naming them as parent. Not ours to rewrite.
                excluded.add(key)
            if s.origin is not None:
                up = find(s.origin)
                if up is None:
                    excluded.add(key)
                    continue
                s.up = up
                if s.origin[1] == up.clock + up.length - 1:
                    up.kids += 1
                    up.kid = s
                else:
                    # A merged run of deleted entries is one struct but several
                    # positions; a child of an inner one keeps the run whole.
                    up.branched = True
            items.append((s, key))

    def stable(s: _Struct) -> bool:
        return s.clock + s.length <= frontier.get(s.client, 0)

    dead: set[int] = set()  # id() of collected structs
    for s, key in items:
        up, kid = s.up, s.kid
        if (
            up is not None
            and kid is not None
            and s.kids == 1
            and not s.branched
            # ...an only child, hung at its parent's end: what takes its place
            # keeps its rank among siblings (Yjs orders siblings by client id).
            and up.kids == 1
            and not up.branched
            and key not in excluded
            and stable(s)
            and stable(kid)
            and (s.ref == _DELETED or deleted.covers(s.client, s.clock, s.length))
        ):
            dead.add(id(s))
    if not dead:
        return None

    out = bytearray()
    ranges = Ranges()
    rehung = Ranges()
    _write_varuint(out, len(clients))
    after = 0
    # Yjs writes clients in descending order; decoders accept any order.
    for client in sorted(clients, reverse=True):
        structs = clients[client]
        body = bytearray()
        n = 0
        run = 0  # length of the GC run being built
        copy_from = copy_to = -1  # a byte span of structs kept as they are
        for s in structs:
            if id(s) in dead or s.ref == _GC:
                if id(s) in dead:
                    ranges.add(client, s.clock, s.clock + s.length)
                run += s.length
                continue
            if run:
                if copy_to > copy_from:
                    body += snapshot[copy_from:copy_to]
                    copy_from = copy_to = -1
                body.append(_GC)
                _write_varuint(body, run)
                n += 1
                run = 0
            n += 1
            if s.ref != _SKIP:
                after += 1
            up = s.up
            if up is None or id(up) not in dead:
                if s.start != copy_to:
                    if copy_to > copy_from:
                        body += snapshot[copy_from:copy_to]
                    copy_from = s.start
                copy_to = s.end
                continue
            # Hang it where the collected run above it hung: origin written, so
            # no parent info.
            while up.up is not None and id(up.up) in dead:
                up = up.up
            assert up.origin is not None
            rehung.add(up.origin[0], up.origin[1], up.origin[1] + 1)
            if copy_to > copy_from:
                body += snapshot[copy_from:copy_to]
            copy_from = copy_to = -1
            body.append(s.ref | _ORIGIN | _PARENT_SUB)
            _write_varuint(body, up.origin[0])
            _write_varuint(body, up.origin[1])
            body += snapshot[s.content : s.end]
        if copy_to > copy_from:
            body += snapshot[copy_from:copy_to]
        if run:
            body.append(_GC)
            _write_varuint(body, run)
            n += 1
        _write_varuint(out, n)
        _write_varuint(out, client)
        _write_varuint(out, structs[0].clock if structs else 0)
        out += body
    out += snapshot[ds_start:]
    items_before = sum(
        1 for structs in clients.values() for s in structs if s.ref not in (_GC, _SKIP)
    )
    return Rewrite(bytes(out), ranges.normalize(), rehung.normalize(), items_before, after)


def stale_reference(
    update: bytes, collected: Ranges, rehung: Ranges, known: dict[int, int]
) -> str | None:
    """Why ``update`` cannot be integrated into a collected history, or None.

    An item we do not have yet (not covered by ``known``, our state vector) is
    refused if its origin or right origin lies in a collected range (Yjs would
    silently turn it into a GC struct: the write would vanish here and survive
    on replicas that kept the history), or is an id a kept item was re-hung to
    (it would be a sibling of that item here and of the collected one there,
    ordered differently: found in review). Only a replica that had not seen the
    stable frontier writes either; every member already has the re-hung item.
    """
    if not collected.by_client:
        return None
    return stale_in(parse(update)[0], collected, rehung, known)


def stale_in(
    clients: dict[int, list[_Struct]], collected: Ranges, rehung: Ranges, known: dict[int, int]
) -> str | None:
    """:func:`stale_reference` over an update :func:`parse` already read."""
    for structs in clients.values():
        for s in structs:
            have = known.get(s.client, 0)
            if s.ref in (_GC, _SKIP) or s.clock + s.length <= have:
                continue
            origin = s.origin
            if s.clock < have:
                # Partly known (a merged run of deleted entries): pycrdt splits it
                # at our clock, and the new part hangs from our last item of it,
                # not from the run's written origin (found in review: an honest
                # member's diff was refused).
                origin = (s.client, have - 1)
            for ref in (origin, s.right):
                if ref is not None and collected.covers(*ref):
                    return (
                        f"item {s.client}:{s.clock} builds on {ref[0]}:{ref[1]}, an overwritten "
                        "entry every cluster member had already superseded and this node has "
                        "garbage-collected"
                    )
                if ref is not None and rehung.covers(*ref):
                    return (
                        f"item {s.client}:{s.clock} builds on {ref[0]}:{ref[1]}, where this node "
                        "re-hung history it garbage-collected; every cluster member had already "
                        "written past it"
                    )
    return None


def partial_replica(remote: dict[int, int], floor: dict[int, int]) -> str | None:
    """Why a replica at state vector ``remote`` cannot take our collected history.

    ``floor`` covers every frontier a collection here used, so every collected
    and every re-hung item. A replica holding all of it (every member) or none
    of its clients' items (a fresh replica) is fine. One in between may hold a
    collected item without the item re-hung below it, and would integrate the
    re-hung one differently (found in review: the key vanished there).
    """
    if all(remote.get(c, 0) == 0 for c in floor) or all(
        remote.get(c, 0) >= clock for c, clock in floor.items()
    ):
        return None
    behind = sorted(c for c, clock in floor.items() if remote.get(c, 0) < clock)
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
    # Every clock range collected so far, and the ids re-hung items hang from:
    # what stale_reference checks.
    ranges: Ranges = field(default_factory=Ranges)
    collected_items: int = 0
    rehung: Ranges = field(default_factory=Ranges)
    # Componentwise max of the frontiers collections used: what partial_replica
    # checks (it covers every collected and re-hung item).
    floor: dict[int, int] = field(default_factory=dict)

    def pack(self) -> bytes:
        return bytes(
            msgpack.packb(
                {
                    "frontier": self.frontier,
                    "previous": self.previous,
                    "ranges": self.ranges.to_wire(),
                    "collected": self.collected_items,
                    "rehung": self.rehung.to_wire(),
                    "floor": self.floor,
                }
            )
        )

    @classmethod
    def unpack(cls, raw: bytes) -> GcState:
        """Inverse of :meth:`pack`; ``ValueError`` on anything else."""
        try:
            body = msgpack.unpackb(raw, strict_map_key=False)
            return cls(
                frontier=body["frontier"],
                previous=body["previous"],
                ranges=Ranges.from_wire(body["ranges"]).normalize(),
                collected_items=int(body["collected"]),
                rehung=Ranges.from_wire(body.get("rehung", {})).normalize(),
                floor={int(c): int(k) for c, k in body.get("floor", {}).items()},
            )
        except (msgpack.UnpackException, KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"not a garbage-collection record: {exc!r}") from exc
