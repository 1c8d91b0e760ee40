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
from dataclasses import dataclass

from edgestate.store.codec import (
    DELETED,
    DOC,
    GC,
    ORIGIN,
    PARENT_SUB,
    SKIP,
    TYPE,
    Id,
    Struct,
    read_delete_set,
    walk,
    write_varuint,
)
from edgestate.store.gc import Ranges


@dataclass(frozen=True, slots=True)
class Rewrite:
    """Result of :func:`collect`."""

    update: bytes  # the rewritten full state
    ranges: Ranges  # clocks turned into GC by this pass
    rehung: Ranges  # the ids re-hung items now hang from (one clock each)
    items_before: int
    items_after: int


def parse(
    update: bytes, headers: list[tuple[int, int]] | None = None
) -> tuple[dict[int, list[Struct]], int]:
    """Every struct of a v1 update by client, and where its delete set starts.

    ``headers``, if given, gets every client block's (client, first clock).
    """
    clients: dict[int, list[Struct]] = {}
    blocks, pos = walk(update, clients)
    if headers is not None:
        headers.extend(blocks)
    return clients, pos


class _Index:
    """Find the struct holding an id; resolve each item's (root map, key)."""

    def __init__(self, clients: dict[int, list[Struct]]) -> None:
        self.clients = clients
        self.starts = {c: [s.clock for s in structs] for c, structs in clients.items()}
        # Most ids name a struct's first clock (map entries are one clock long).
        self.exact = {(s.client, s.clock): s for structs in clients.values() for s in structs}
        self._keys: dict[Id, tuple[str, str] | None] = {}

    def find(self, ident: Id) -> Struct | None:
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

    def key_of(self, s: Struct) -> tuple[str, str] | None:
        """(root map name, key) of a root-map entry; None for anything else."""
        chain: list[Struct] = []
        found: tuple[str, str] | None = None
        cur: Struct | None = s
        # Iterative: a key overwritten a million times has a million-long chain.
        while cur is not None:
            ident = (cur.client, cur.clock)
            if ident in self._keys:
                found = self._keys[ident]
                break
            chain.append(cur)
            if cur.ref in (GC, SKIP):
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
    deleted = Ranges(read_delete_set(snapshot, ds_start)).normalize()
    index = _Index(clients)
    find = index.find
    items: list[tuple[Struct, tuple[str, str]]] = []
    excluded: set[tuple[str, str]] = set()
    for structs in clients.values():
        for s in structs:
            if s.ref == GC or s.ref == SKIP:
                continue
            key = index.key_of(s)
            if key is None:
                continue
            if s.right is not None or s.ref == TYPE or s.ref == DOC:
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

    def stable(s: Struct) -> bool:
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
            and (s.ref == DELETED or deleted.covers(s.client, s.clock, s.length))
        ):
            dead.add(id(s))
    if not dead:
        return None

    out = bytearray()
    ranges = Ranges()
    rehung = Ranges()
    write_varuint(out, len(clients))
    after = 0
    # Yjs writes clients in descending order; decoders accept any order.
    for client in sorted(clients, reverse=True):
        structs = clients[client]
        body = bytearray()
        n = 0
        run = 0  # length of the GC run being built
        copy_from = copy_to = -1  # a byte span of structs kept as they are
        for s in structs:
            if id(s) in dead or s.ref == GC:
                if id(s) in dead:
                    ranges.add(client, s.clock, s.clock + s.length)
                run += s.length
                continue
            if run:
                if copy_to > copy_from:
                    body += snapshot[copy_from:copy_to]
                    copy_from = copy_to = -1
                body.append(GC)
                write_varuint(body, run)
                n += 1
                run = 0
            n += 1
            if s.ref != SKIP:
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
            body.append(s.ref | ORIGIN | PARENT_SUB)
            write_varuint(body, up.origin[0])
            write_varuint(body, up.origin[1])
            body += snapshot[s.content : s.end]
        if copy_to > copy_from:
            body += snapshot[copy_from:copy_to]
        if run:
            body.append(GC)
            write_varuint(body, run)
            n += 1
        write_varuint(out, n)
        write_varuint(out, client)
        write_varuint(out, structs[0].clock if structs else 0)
        out += body
    out += snapshot[ds_start:]
    items_before = sum(
        1 for structs in clients.values() for s in structs if s.ref not in (GC, SKIP)
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
    Only references to items this store holds count: what it does not hold yet
    it has not collected, whatever record it merged.
    """
    if not collected.by_client:
        return None
    return stale_in(parse(update)[0], collected, rehung, known)


def stale_in(
    clients: dict[int, list[Struct]], collected: Ranges, rehung: Ranges, known: dict[int, int]
) -> str | None:
    """:func:`stale_reference` over an update :func:`parse` already read."""
    for structs in clients.values():
        for s in structs:
            have = known.get(s.client, 0)
            if s.ref in (GC, SKIP) or s.clock + s.length <= have:
                continue
            origin = s.origin
            if s.clock < have:
                # Partly known (a merged run of deleted entries): pycrdt splits it
                # at our clock, and the new part hangs from our last item of it,
                # not from the run's written origin (found in review: an honest
                # member's diff was refused).
                origin = (s.client, have - 1)
            for ref in (origin, s.right):
                if ref is None or ref[1] >= known.get(ref[0], 0):
                    # Not held here: the update brings it (a collector's diff with
                    # its re-hung items, a full history) or it is a gap the hold
                    # waits for. Only history this store holds was collected here;
                    # a record merged before its history (found in the hardening
                    # issue) made a fresh node refuse every honest diff.
                    continue
                if collected.covers(*ref):
                    return (
                        f"item {s.client}:{s.clock} builds on {ref[0]}:{ref[1]}, an overwritten "
                        "entry every cluster member had already superseded and this node has "
                        "garbage-collected"
                    )
                if rehung.covers(*ref):
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
