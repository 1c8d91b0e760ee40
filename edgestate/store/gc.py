"""A document's garbage-collection record: the clock ranges collected, the ids
re-hung items hang from, the frontiers used (see :mod:`edgestate.store.gc_rule`
for the rule itself and why it is safe).

Kept apart from the rule so reading a record (``Store.gc_status`` on a read-only
store, the sync layer's exchange of records) does not load the parser.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field

import msgpack


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
class GcRecord:
    """What other replicas learn from a collection: the clock ranges collected,
    the ids re-hung items hang from, and the floor (max of the frontiers used).

    It travels with the collected history it describes (``Store.diff_with_record``
    / ``apply_update(record=...)``): a replica holding that history without it
    would take, and pass on, writes the collector refuses.
    """

    ranges: Ranges
    rehung: Ranges
    floor: dict[int, int]


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

    def record(self) -> GcRecord | None:
        """The part of this state peers learn from; None if nothing was collected."""
        if not self.ranges.by_client:
            return None
        return GcRecord(self.ranges.normalize(), self.rehung.normalize(), dict(self.floor))

    def merged(self, record: GcRecord) -> GcState:
        """A copy with ``record`` folded in (ranges and re-hang points unioned,
        floors by maximum): merging is idempotent, commutative and associative."""
        return GcState(
            frontier=self.frontier,
            previous=self.previous,
            ranges=self.ranges.union(record.ranges),
            collected_items=self.collected_items,
            rehung=self.rehung.union(record.rehung),
            floor=vector_max(self.floor, record.floor),
        )

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


def vector_max(a: dict[int, int], b: dict[int, int]) -> dict[int, int]:
    """Componentwise max of two state vectors (how floors are merged)."""
    return {c: max(a.get(c, 0), b.get(c, 0)) for c in a.keys() | b.keys()}
