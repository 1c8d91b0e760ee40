"""Compaction (folding a document's log into a snapshot) and the installation of
garbage collections, which run on a thread of their own after a compaction
(the rule itself and why it is safe: :mod:`edgestate.store.gc_rule`)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Container
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from edgestate.store import keys as K
from edgestate.store.codec import decode_state_vector
from edgestate.store.crdt import CrdtDocument
from edgestate.store.env import DocMeta
from edgestate.store.gc import GcState, vector_max
from edgestate.store.gc_rule import Rewrite, collect, stale_reference
from edgestate.store.types import GcMode

if TYPE_CHECKING:
    from edgestate.store.group import WriterState

log = logging.getLogger(__name__)

# Fewer collectable structs than this (beyond what live keys need) are not worth
# parsing a document for. Small: compaction, which comes first, already costs more.
_MIN_GARBAGE = 32
# ...nor less than this share of the structs a collection would parse.
_MIN_GARBAGE_SHARE = 0.25


@dataclass(slots=True)
class Collected:
    """A background garbage collection finished (see Compactor._start_collect)."""

    name: str
    snap_seq: int  # the compaction whose snapshot it rewrote
    known: dict[int, int]  # that snapshot's state vector
    frontier: dict[int, int]  # the frontier it collected at
    result: Rewrite | None
    fresh: CrdtDocument | None  # the CRDT rebuilt from the collected snapshot
    error: BaseException | None


class Compactor:
    """Compacts on the writer thread; collects on threads of its own."""

    def __init__(
        self,
        writer: WriterState,
        post: Callable[[Collected], None],
        loading: Container[str],
    ) -> None:
        self._w = writer
        self._post = post  # hands a finished collection to the writer thread
        self._loading = loading  # documents being loaded off the writer thread
        self.collecting: dict[str, threading.Thread] = {}
        # Called (on the writer thread) with a document's name after a collection lands.
        self.collected_listeners: list[Callable[[str], None]] = []
        self.compactions = 0
        self.collections = 0

    def maybe_compact(self, name: str) -> None:
        """Compact ``name`` if its log has outgrown its snapshot."""
        w = self._w
        meta = w.metas.get(name)
        crdt = w.docs.get(name)
        if meta is None or crdt is None:
            return
        if meta.log_b <= max(meta.snap_b, w.config.compact_min_log_bytes):
            return
        self.compact(name)

    def compact(self, name: str, txn: Any | None = None) -> None:
        """Fold ``name``'s update log into a new snapshot, in one LMDB transaction.

        The snapshot put and the log deletes commit atomically, so a crash at any
        point leaves either the old snapshot + full log or the new snapshot: never
        a state with updates missing. Readers are never blocked (LMDB MVCC).
        Runs in ``txn`` if given (a group's), else in a transaction of its own.
        """
        w = self._w
        if txn is None:
            before, gc_before = w.metas[name], w.gc.get(name)
            try:
                with w.env.env.begin(write=True) as own:
                    self.compact(name, own)
            except BaseException:
                # The transaction aborted: the bookkeeping must not claim otherwise
                # (found in review: later writes would have skipped log entries).
                w.metas[name] = before
                if gc_before is not None:
                    w.gc[name] = gc_before
                raise
            return
        meta = w.metas[name]
        tables = w.env.tables
        crdt = w.load_doc(name, txn)
        snapshot = crdt.snapshot()
        txn.put(name.encode(), snapshot, db=tables.snap)
        tables.drop_log(txn, name, meta.snap_seq, meta.seq)
        new = DocMeta(
            seq=meta.seq,
            snap_seq=meta.seq,
            log_n=0,
            log_b=0,
            snap_b=len(snapshot),
            keys=meta.keys,
            value_b=meta.value_b,
            created_ms=meta.created_ms,
        )
        txn.put(name.encode(), new.pack(), db=tables.docs)
        w.metas[name] = new
        self.compactions += 1
        self._start_collect(name, crdt, snapshot, txn)

    def _start_collect(self, name: str, crdt: CrdtDocument, snapshot: bytes, txn: Any) -> None:
        """Garbage-collect stable overwrites out of a new snapshot, off this thread.

        Parsing costs ~5 us per struct in Python (seconds for a million-key
        document), so a collector thread does it and the writer installs the
        result between groups (:meth:`land`). Skipped when the state vector
        says there is little to gain: every clock not yet collected is a
        struct, and about two per live key are kept.
        """
        w = self._w
        mode = w.config.gc
        if mode is GcMode.OFF:
            return
        state = replace(w.gc.get(name) or GcState())
        known = decode_state_vector(crdt.state_vector())
        if mode is GcMode.SOLO:
            # Advanced at every compaction, even one that starts no collection, so
            # the next collection's frontier is one compaction old, not older.
            frontier = state.previous
            state.previous = known
            w.gc[name] = state
            txn.put(K.gc_record_key(name), state.pack(), db=w.env.tables.meta)
        else:
            frontier = state.frontier
        if not frontier or name in self.collecting:
            return
        # Every clock not yet collected is a struct to parse; only those below the
        # frontier can go, less the live ones (taken as spread evenly: subtracting
        # every live key from the stable part starved documents that gain keys).
        # Parse when that garbage is a fair share of the whole: a frontier lagging by a minute of
        # heavy writes would otherwise have each compaction re-parse that minute
        # for nothing. (A growth gate, "k times what the last collection kept",
        # was tried: in SOLO mode rarer collections lengthen the frontier's lag,
        # which keeps more, which raises the gate: 77x live instead of 8x.)
        collected = sum(e - b for runs in state.ranges.by_client.values() for b, e in runs)
        present = sum(known.values()) - collected
        stable = sum(min(frontier.get(c, 0), clock) for c, clock in known.items()) - collected
        live = w.metas[name].keys
        garbage = stable * (present - live) // present if present > 0 else 0
        if garbage < max(present * _MIN_GARBAGE_SHARE, _MIN_GARBAGE):
            return
        snap_seq = w.metas[name].seq
        shape = _shape(crdt)

        replica = w.env.replica_id
        post = self._post

        def run() -> None:
            fresh = None
            try:
                result = collect(snapshot, frontier)
                if result is not None:
                    # Loaded here, off the writer thread (~9 us per key), it is both
                    # the check that the rewrite lost nothing and the CRDT that
                    # replaces the live one, so memory shrinks too.
                    fresh = CrdtDocument(name, replica, threaded=True)
                    fresh.load(result.update, [])
                    if not _same_shape(fresh, known, shape):
                        log.error("garbage collection of %r failed its check; history kept", name)
                        result = fresh = None
            except Exception as exc:
                post(Collected(name, snap_seq, known, frontier, None, None, exc))
            else:
                post(Collected(name, snap_seq, known, frontier, result, fresh, None))

        thread = threading.Thread(target=run, name=f"edgestate-gc-{name}", daemon=True)
        # Started before it is registered: another thread may join it as soon as it
        # is (found under load). Its result is installed on this thread, after this job.
        thread.start()
        self.collecting[name] = thread

    def collector(self, name: str) -> threading.Thread | None:
        """The thread collecting ``name`` now, if any (any thread may ask)."""
        return self.collecting.get(name)

    def land(self, done: Collected) -> None:
        """Install a finished collection; a failure is logged and the history kept."""
        try:
            self._install(done)
        except Exception:
            # Found in review: unguarded, a full disk (MapFullError) or a log entry
            # the new CRDT cannot replay killed the writer thread and hung every
            # caller. The install is one LMDB transaction: on failure nothing of
            # it is stored and the history stays.
            log.exception("installing the collection of %r failed", done.name)
            self._w.docs.pop(done.name, None)

    def _install(self, done: Collected) -> None:
        """Write a collected snapshot, if it still describes the current compaction."""
        w = self._w
        self.collecting.pop(done.name).join()
        if done.error is not None:
            log.error("cannot garbage-collect %r, keeping its history: %r", done.name, done.error)
            return
        meta = w.metas.get(done.name)
        result = done.result
        if result is None or meta is None or meta.snap_seq != done.snap_seq:
            return  # nothing to collect, or compacted again meanwhile: next time
        tables = w.env.tables
        name = done.name
        with w.env.env.begin(write=True) as txn:
            since = tables.log_since(txn, name, meta.snap_seq)
            # Writes logged since the snapshot must not build on what is collected
            # (only a stale replica's could, and it got in before the ranges were
            # known): keep the history rather than drop such a write on reload.
            if any(
                stale_reference(update, result.ranges, result.rehung, done.known)
                for update in since
            ):
                log.warning("a write builds on %r's collected history; kept", name)
                return  # nothing written: the empty transaction commits
            fresh = self._caught_up(name, done.fresh, since)
            old = w.gc.get(name) or GcState()
            state = replace(
                old,
                ranges=old.ranges.union(result.ranges),
                rehung=old.rehung.union(result.rehung),
                floor=vector_max(old.floor, done.frontier),
                collected_items=old.collected_items + result.items_before - result.items_after,
            )
            new = replace(meta, snap_b=len(result.update))
            txn.put(name.encode(), result.update, db=tables.snap)
            txn.put(K.gc_record_key(name), state.pack(), db=tables.meta)
            txn.put(name.encode(), new.pack(), db=tables.docs)
        w.gc[name] = state
        w.metas[name] = new
        self.collections += 1
        for listener in list(self.collected_listeners):
            try:
                listener(name)
            except Exception:
                log.exception("a collection listener failed")
        if fresh is not None:
            w.docs[name] = fresh
        else:
            # Not caught up (see _caught_up): rebuilt from the collected snapshot
            # and the log on next use instead.
            w.docs.pop(name, None)

    def _caught_up(
        self, name: str, fresh: CrdtDocument | None, since: list[bytes]
    ) -> CrdtDocument | None:
        """The collected CRDT with the writes logged since its snapshot, if it
        matches the live one (same clocks, same keys); else None."""
        live = self._w.docs.get(name)
        if fresh is None or live is None or name in self._loading:
            return None
        fresh.load(None, since)
        fresh.last_used = live.last_used
        if _same_shape(fresh, decode_state_vector(live.state_vector()), _shape(live)):
            return fresh
        log.error("the collected CRDT of %r does not match the live one; rebuilding", name)
        return None


def _shape(crdt: CrdtDocument) -> tuple[int, int]:
    return len(crdt.root), len(crdt.counters)


def _same_shape(crdt: CrdtDocument, known: dict[int, int], shape: tuple[int, int]) -> bool:
    """A cheap cross-check that a rewrite lost nothing: same clocks, same key counts."""
    return decode_state_vector(crdt.state_vector()) == known and _shape(crdt) == shape
