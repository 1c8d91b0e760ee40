"""Value types at the store's boundary: write operations, results, events, config."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Durability(enum.Enum):
    """When a write is acknowledged.

    ``SYNC`` (the default) acknowledges a write only after the group commit that
    holds it has been fsynced: it survives ``kill -9`` and power loss.
    ``BATCHED`` acknowledges after the LMDB commit but fsyncs on a timer
    (``StoreConfig.batched_flush_ms``): it survives ``kill -9`` of the process (the
    kernel holds the pages) but may lose the last interval on power loss or a
    kernel crash. It is named for what it is so nobody picks it by accident.
    """

    SYNC = "sync"
    BATCHED = "batched"


class GcMode(enum.Enum):
    """Which overwritten map entries compaction may garbage-collect (see store.gc).

    ``CLUSTER`` (the default) collects only history covered by the frontier the
    sync layer proves every cluster member has reached
    (:meth:`Store.set_gc_frontier`); with no frontier set, nothing is collected.
    ``SOLO`` is for a store that is the only replica: its own state vector at the
    previous compaction is the frontier (one compaction of delay, so a Yjs client
    that raced an overwrite is integrated first). ``OFF`` never collects.
    """

    CLUSTER = "cluster"
    SOLO = "solo"
    OFF = "off"


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreConfig:
    """Tunables of a store. Every default carries its reason."""

    durability: Durability = Durability.SYNC
    # Fsync interval in BATCHED mode: short enough that a power cut loses little,
    # long enough to fold thousands of commits into one fsync.
    batched_flush_ms: int = 50
    # The LMDB map is reserved address space, not disk (the file is sparse), so it is
    # set large once and never grown at run time: a grown map makes other processes
    # that have the environment open fail with MDB_MAP_RESIZED.
    map_size: int = 64 << 30
    # Keys are CRDT map keys and LMDB key suffixes; LMDB caps keys at 511 bytes and
    # the document prefix takes up to 65 of them.
    max_key_bytes: int = 400
    # A value travels in one sync frame and one Yjs update; 1 MiB keeps frames small.
    max_value_bytes: int = 1 << 20
    # Most operations one group commit may gather: bounds the latency a single
    # commit adds to the first caller in it.
    max_group_ops: int = 4096
    # A document's CRDT is dropped from memory after this long without a write;
    # reads never need it (they hit the materialized table).
    idle_evict_s: float = 60.0
    # ...unless it holds more keys than this: reloading a CRDT costs ~9 us per key
    # on the one writer thread (9 s for 1M keys, measured), which would stall every
    # document's writes; memory is the cheaper price for big documents.
    evict_max_keys: int = 50_000
    # Compaction folds the update log into a snapshot once the log outgrows the
    # snapshot (automerge-repo's rule), but not before the log holds this many
    # bytes, so tiny documents are not re-snapshotted on every write.
    compact_min_log_bytes: int = 64 << 10
    # Without collection a document's snapshot grows ~16 bytes per overwrite forever.
    gc: GcMode = GcMode.CLUSTER


@dataclass(frozen=True, slots=True)
class Set:
    """Write ``value`` under ``key`` of ``doc`` (last writer wins)."""

    doc: str
    key: str
    value: bytes


@dataclass(frozen=True, slots=True)
class Delete:
    """Remove ``key`` from ``doc`` (a no-op if it is absent)."""

    doc: str
    key: str


@dataclass(frozen=True, slots=True)
class Incr:
    """Add ``delta`` to the convergent counter at ``key`` of ``doc``.

    Concurrent increments on different nodes all count. The materialized value
    of a counter is its total as 8 little-endian bytes (a signed 64-bit integer).
    """

    doc: str
    key: str
    delta: int


WriteOp = Set | Delete | Incr


@dataclass(frozen=True, slots=True)
class ScanPage:
    """One page of a prefix scan, in key order.

    ``cursor`` is opaque; pass it back to get the next page. ``None`` means the
    scan is complete.
    """

    items: list[tuple[str, bytes]]
    cursor: str | None
    # Keys of ``items`` that hold counters (read from the same rows, at no cost).
    counters: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class ChangeEvent:
    """Keys of one document changed by one durable commit.

    ``update`` is the Yjs v1 update that carries the change (captured from the
    transaction, so producing it costs nothing extra); ``origin`` is ``None`` for a
    local write and the value passed to ``apply_update`` for a remote one;
    ``announced``: the update was handed to the store's submit listeners when it
    was submitted (:mod:`edgestate.store.announce`), so they have it already.
    """

    doc: str
    keys: frozenset[str]
    update: bytes
    origin: str | None = None
    announced: bool = False


@dataclass(frozen=True, slots=True)
class DocumentInfo:
    """What ``inspect docs`` shows about one document."""

    name: str
    keys: int
    log_entries: int
    log_bytes: int
    snapshot_bytes: int
    value_bytes: int = 0


@dataclass(frozen=True, slots=True)
class GcStatus:
    """What garbage collection has done to one document."""

    mode: GcMode
    frontier: dict[int, int] | None  # the cluster's stable frontier, if one was set
    collected_items: int  # overwritten entries turned into GC ranges so far
    collected_ranges: int  # clock ranges they form (what stale checks look up)
