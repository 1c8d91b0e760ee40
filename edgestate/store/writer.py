"""The store's single writer thread: group commit, CRDT ownership, compaction.

Every write (local ops, remote updates, document creation) is a job on one queue.
The writer takes whatever has queued up (up to ``max_group_ops``), runs all of it
in one LMDB write transaction, commits once (one fsync in SYNC mode) and only then
acknowledges each job. So durable throughput grows with the number of concurrent
callers instead of being capped at one fsync per write.

Invariant: a job that raises an :class:`EdgestateError` has written nothing to the
transaction, and any CRDT it had mutated in memory is evicted, so the next use
reloads it from the (uncommitted) transaction, which holds exactly the other
jobs' writes. A failure of the commit itself fails every job of the group and
evicts every document it touched.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from typing import Any, Generic, TypeVar

from edgestate.errors import (
    EdgestateError,
    InvalidUpdateError,
    StaleReplicaError,
    StoreClosedError,
    StoreError,
    UnknownDocumentError,
    ValueTooLargeError,
)
from edgestate.store import keys as K
from edgestate.store.changes import ChangeHub
from edgestate.store.codec import check_v1_update, decode_state_vector
from edgestate.store.crdt import CrdtDocument, WritePlan
from edgestate.store.env import DocMeta, Environment
from edgestate.store.gc import GcState, Ranges
from edgestate.store.gc_rule import (
    Rewrite,
    collect,
    partial_replica,
    stale_in,
    stale_reference,
)
from edgestate.store.gc_rule import parse as parse_update
from edgestate.store.types import ChangeEvent, Durability, GcMode, Set, StoreConfig, WriteOp
from edgestate.store.updates import update_blocks

log = logging.getLogger(__name__)

T = TypeVar("T")

# Fewer collectable structs than this (beyond what live keys need) are not worth
# parsing a document for. Small: compaction, which comes first, already costs more.
_MIN_GARBAGE = 32
# ...nor less than this share of the structs a collection would parse.
_MIN_GARBAGE_SHARE = 0.25


@dataclass(slots=True)
class _Job(Generic[T]):
    """One unit of work. Sync callers wait on ``future``; asyncio callers on
    ``afut``, settled on their ``loop`` in one hop per group (a thread-safe wakeup
    costs ~30 us, too much to pay once per write at high concurrency)."""

    run: Callable[[_Group], T]
    weight: int
    future: Future[T] = field(default_factory=Future)
    loop: asyncio.AbstractEventLoop | None = None
    afut: asyncio.Future[T] | None = None
    docs: tuple[str, ...] = ()  # documents whose CRDT the job needs

    def start(self) -> bool:
        if self.afut is not None:
            return not self.afut.cancelled()
        return self.future.set_running_or_notify_cancel()


def _settle(items: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    for afut, result, error in items:
        if afut.done():
            continue  # cancelled by its caller meanwhile
        if error is None:
            afut.set_result(result)
        else:
            afut.set_exception(error)


_STOP = object()


@dataclass(slots=True)
class _Loaded:
    """A background load finished (the loader thread queues this to the writer)."""

    name: str
    crdt: CrdtDocument | None
    error: BaseException | None


@dataclass(slots=True)
class _Loading:
    """A big document being loaded off the writer thread, and the jobs waiting on it."""

    thread: threading.Thread
    waiting: list[_Job[Any]] = field(default_factory=list)


@dataclass(slots=True)
class _Collected:
    """A background garbage collection finished (see Writer._start_collect)."""

    name: str
    snap_seq: int  # the compaction whose snapshot it rewrote
    known: dict[int, int]  # that snapshot's state vector
    frontier: dict[int, int]  # the frontier it collected at
    result: Rewrite | None
    fresh: CrdtDocument | None  # the CRDT rebuilt from the collected snapshot
    error: BaseException | None


# Out-of-order remote updates held per document until their gap is filled. Past
# this, anti-entropy is the cheaper repair than holding more.
MAX_PENDING = 10_000

# A held update: its pending-table key, its bytes, its (client, start clock) blocks.
_Held = tuple[bytes, bytes, list[tuple[int, int]]]


def _ready(crdt: CrdtDocument, blocks: list[tuple[int, int]]) -> bool:
    """True if every block starts at or before what we have of its client."""
    if not blocks:
        return True
    have = decode_state_vector(crdt.state_vector())
    return all(start <= have.get(client, 0) for client, start in blocks)


class _Group:
    """What the jobs of one group commit share: the transaction and pending output."""

    def __init__(self, writer: Writer, txn: Any) -> None:
        self.writer = writer
        self.txn = txn
        self.events: list[ChangeEvent] = []
        self.touched: set[str] = set()
        self.plans: dict[str, WritePlan] = {}
        self.dirty = False

    def doc(self, name: str) -> CrdtDocument:
        """The live CRDT of ``name`` with pending local writes applied, loading it if needed."""
        self.touched.add(name)
        self.flush(name)
        return self.writer.load_doc(name, self.txn)

    def plan(self, name: str) -> WritePlan:
        """The open plan of local writes to ``name`` in this group."""
        plan = self.plans.get(name)
        if plan is None:
            self.touched.add(name)
            plan = self.writer.load_doc(name, self.txn).plan()
            self.plans[name] = plan
        return plan

    def flush(self, name: str | None = None) -> None:
        """Execute the open write plan of ``name`` (or of every document)."""
        names = list(self.plans) if name is None else [name] if name in self.plans else []
        for doc in names:
            plan = self.plans.pop(doc)
            if plan:
                update, values = plan.execute()
                self.persist(doc, update, values, None)

    def persist(
        self, name: str, update: bytes | None, values: dict[str, bytes | None], origin: str | None
    ) -> None:
        """Append ``update`` to the log and store the materialized ``values``."""
        if update is None:
            return
        w = self.writer
        meta = w.metas[name]
        txn = self.txn
        txn.put(K.log_key(name, meta.seq), update, db=w.env.tables["log"])
        meta.seq += 1
        meta.log_n += 1
        meta.log_b += len(update)
        kv = w.env.tables["kv"]
        prefix = K.doc_prefix(name)
        for key, value in values.items():
            lkey = prefix + key.encode()
            if value is None:
                old = txn.pop(lkey, db=kv)
                if old is not None:
                    meta.keys -= 1
                    meta.value_b -= len(old) - 1
            else:
                old = txn.replace(lkey, value, db=kv)
                if old is None:
                    meta.keys += 1
                    meta.value_b += len(value) - 1
                else:
                    meta.value_b += len(value) - len(old)
        w.dirty_metas.add(name)
        self.dirty = True
        if w.hub.active:
            self.events.append(ChangeEvent(name, frozenset(values), update, origin))


class Writer:
    """Owns the write side of a store; see the module docstring."""

    def __init__(self, env: Environment, config: StoreConfig, hub: ChangeHub) -> None:
        self.env = env
        self.config = config
        self.hub = hub
        self.docs: dict[str, CrdtDocument] = {}
        self.metas: dict[str, DocMeta] = {}
        self.dirty_metas: set[str] = set()
        self.pending: dict[str, list[_Held]] = {}
        self.gc: dict[str, GcState] = {}
        self._collecting: dict[str, threading.Thread] = {}
        # Called (on this thread) with a document's name after a collection lands.
        self.collected_listeners: list[Callable[[str], None]] = []
        self._loading: dict[str, _Loading] = {}
        self._last_evict = time.monotonic()
        self._submit_lock = threading.Lock()
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._closed = False
        self._load_metas()
        self.commits = 0
        self.compactions = 0
        self.collections = 0
        self._thread = threading.Thread(target=self._loop, name="edgestate-writer", daemon=True)
        self._thread.start()
        self._flusher: threading.Thread | None = None
        self._flush_stop = threading.Event()
        if config.durability is Durability.BATCHED:
            self._flusher = threading.Thread(
                target=self._flush_loop, name="edgestate-flush", daemon=True
            )
            self._flusher.start()

    # --- public, any thread -------------------------------------------------------

    def submit(
        self, run: Callable[[_Group], T], weight: int = 1, docs: tuple[str, ...] = ()
    ) -> Future[T]:
        """Queue a job; its future resolves after the commit holding it is durable."""
        job: _Job[T] = _Job(run, weight, docs=docs)
        self._enqueue(job)
        return job.future

    def submit_async(
        self, run: Callable[[_Group], T], weight: int = 1, docs: tuple[str, ...] = ()
    ) -> asyncio.Future[T]:
        """Like :meth:`submit`, for a caller on a running event loop."""
        loop = asyncio.get_running_loop()
        job: _Job[T] = _Job(run, weight, loop=loop, afut=loop.create_future(), docs=docs)
        self._enqueue(job)
        assert job.afut is not None
        return job.afut

    def _enqueue(self, job: _Job[Any]) -> None:
        # Under the lock close() takes too, so no job lands behind the stop
        # marker, where nothing would ever run or fail it (found in review).
        with self._submit_lock:
            if self._closed:
                raise StoreClosedError("the store is closed")
            self._queue.put(job)

    def close(self) -> None:
        """Finish queued jobs, stop the thread, flush."""
        with self._submit_lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(_STOP)
        self._thread.join()
        if self._flusher is not None:
            self._flush_stop.set()
            self._flusher.join()
        self.env.env.sync(True)

    # --- writer thread -----------------------------------------------------------

    def _load_metas(self) -> None:
        with self.env.read() as txn:
            for name, raw in txn.cursor(db=self.env.tables["docs"]):
                self.metas[bytes(name).decode()] = DocMeta.unpack(raw)
            cursor = txn.cursor(db=self.env.tables["meta"])
            if cursor.set_range(K.GC_RECORD_PREFIX):
                for key, raw in cursor:
                    if not bytes(key).startswith(K.GC_RECORD_PREFIX):
                        break
                    name = bytes(key)[len(K.GC_RECORD_PREFIX) :].decode()
                    try:
                        self.gc[name] = GcState.unpack(bytes(raw))
                    except ValueError as exc:
                        # Without it, stale replicas' writes would be taken and then
                        # silently dropped on reload: refuse to run instead.
                        raise StoreError(
                            f"the garbage-collection record of document {name!r} in "
                            f"{self.env.path} is corrupt ({exc}); restore the data "
                            "directory from a backup or a peer"
                        ) from exc

    def load_doc(self, name: str, txn: Any) -> CrdtDocument:
        """Return the cached CRDT of ``name`` or rebuild it from snapshot + log."""
        crdt = self.docs.get(name)
        if crdt is not None:
            return crdt
        crdt = self._read_doc(name, txn, threaded=False)
        self.docs[name] = crdt
        return crdt

    def _read_doc(self, name: str, txn: Any, *, threaded: bool) -> CrdtDocument:
        meta = self.metas.get(name)
        if meta is None:
            raise UnknownDocumentError(f"no document named {name!r}; create it first")
        crdt = CrdtDocument(name, self.env.replica_id, threaded=threaded)
        snapshot = txn.get(name.encode(), db=self.env.tables["snap"])
        cursor = txn.cursor(db=self.env.tables["log"])
        prefix = K.doc_prefix(name)
        updates: list[bytes] = []
        if cursor.set_range(K.log_key(name, meta.snap_seq)):
            for key, value in cursor:
                if not bytes(key).startswith(prefix):
                    break
                updates.append(bytes(value))
        crdt.load(bytes(snapshot) if snapshot is not None else None, updates)
        return crdt

    # --- loading big documents off the writer thread ------------------------------
    #
    # Rebuilding a CRDT costs ~9 us per key (9 s at 1M keys). Done inline, that
    # would stall every document's writes; so a job needing a big document that
    # is not loaded waits (with every later job on that document, to keep their
    # order) while a loader thread rebuilds it, and other jobs go on. Nothing
    # writes the document meanwhile, so the loader's read snapshot stays current.

    def _needs_wait(self, job: _Job[Any]) -> str | None:
        for name in job.docs:
            if name in self._loading:
                return name
            if name not in self.docs:
                meta = self.metas.get(name)
                if meta is not None and meta.keys > self.config.evict_max_keys:
                    self._start_loading(name)
                    return name
        return None

    def _start_loading(self, name: str) -> None:
        def load() -> None:
            try:
                with self.env.read() as txn:
                    crdt = self._read_doc(name, txn, threaded=True)
            except BaseException as exc:
                self._queue.put(_Loaded(name, None, exc))
            else:
                self._queue.put(_Loaded(name, crdt, None))

        thread = threading.Thread(target=load, name=f"edgestate-load-{name}", daemon=True)
        self._loading[name] = _Loading(thread)
        thread.start()

    def _loaded(self, done: _Loaded) -> list[_Job[Any]]:
        """Install a background-loaded document; return the jobs that waited on it."""
        loading = self._loading.pop(done.name)
        loading.thread.join()
        if done.crdt is not None:
            self.docs[done.name] = done.crdt
        else:
            log.error("loading %r failed: %r", done.name, done.error)
            error = StoreError(f"cannot load document {done.name!r}: {done.error}")
            self._resolve([(job, None, error) for job in loading.waiting])
            return []
        return loading.waiting

    def _loop(self) -> None:
        idle_check = max(1.0, self.config.idle_evict_s / 4)
        ready: list[_Job[Any]] = []  # jobs released by a finished load, in order
        stopping = False
        while True:
            if ready:
                incoming: Any = ready.pop(0)
            elif stopping and not self._loading and not self._collecting:
                return
            else:
                if time.monotonic() - self._last_evict > idle_check:
                    self._evict_idle()  # also under steady load, not only when idle
                try:
                    incoming = self._queue.get(timeout=idle_check)
                except queue.Empty:
                    continue
            jobs: list[_Job[Any]] = []
            weight = 0
            while True:
                if incoming is _STOP:
                    stopping = True
                elif isinstance(incoming, _Loaded):
                    ready.extend(self._loaded(incoming))
                elif isinstance(incoming, _Collected):
                    try:
                        self._install_collected(incoming)
                    except Exception:
                        # Found in review: unguarded, a full disk (MapFullError) or a
                        # log entry the new CRDT cannot replay killed this thread and
                        # hung every caller. The install is one LMDB transaction: on
                        # failure nothing of it is stored and the history stays.
                        log.exception("installing the collection of %r failed", incoming.name)
                        self.docs.pop(incoming.name, None)
                else:
                    waiting_on = self._needs_wait(incoming)
                    if waiting_on is not None:
                        self._loading[waiting_on].waiting.append(incoming)
                    else:
                        jobs.append(incoming)
                        weight += incoming.weight
                if weight >= self.config.max_group_ops:
                    break
                if ready:
                    incoming = ready.pop(0)
                    continue
                try:
                    incoming = self._queue.get_nowait()
                except queue.Empty:
                    break
            if jobs:
                self._run_group(jobs)

    def _run_group(self, jobs: list[_Job[Any]]) -> None:
        outcomes: list[tuple[_Job[Any], Any, BaseException | None]] = []
        txn = self.env.env.begin(write=True)
        group = _Group(self, txn)
        try:
            for job in jobs:
                if not job.start():
                    continue
                try:
                    outcomes.append((job, job.run(group), None))
                except EdgestateError as exc:
                    outcomes.append((job, None, exc))
            group.flush()
            if group.dirty:
                docs_table = self.env.tables["docs"]
                for name in self.dirty_metas:
                    txn.put(name.encode(), self.metas[name].pack(), db=docs_table)
                txn.commit()
                self.commits += 1
            else:
                txn.abort()
        except BaseException as failure:
            log.exception("group commit of %d jobs failed", len(jobs))
            txn.abort()
            self._forget(group.touched)
            error = StoreError(f"commit failed, nothing of it was stored: {failure}")
            error.__cause__ = failure
            self._resolve([(job, None, error) for job in jobs])
            return
        finally:
            self.dirty_metas.clear()
        self._resolve(outcomes)
        if group.events:
            self.hub.publish(group.events)
        for name in group.touched:
            try:
                self._maybe_compact(name)
            except Exception:
                # The log stays as it was (the compaction transaction aborted), so
                # nothing is lost; it is retried after the document's next write.
                log.exception("compaction of %r failed", name)

    @staticmethod
    def _resolve(outcomes: Sequence[tuple[_Job[Any], Any, BaseException | None]]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[Any]] = {}
        for job, result, error in outcomes:
            if job.afut is not None and job.loop is not None:
                by_loop.setdefault(job.loop, []).append((job.afut, result, error))
            elif job.future.done():
                continue
            elif error is None:
                job.future.set_result(result)
            else:
                job.future.set_exception(error)
        for loop, items in by_loop.items():
            try:
                loop.call_soon_threadsafe(_settle, items)
            except RuntimeError:
                log.warning("event loop closed before %d writes were acknowledged", len(items))

    def _forget(self, names: set[str]) -> None:
        for name in names:
            self.docs.pop(name, None)
            self.pending.pop(name, None)
        self.metas.clear()
        self._load_metas()

    def _evict_idle(self) -> None:
        self._last_evict = time.monotonic()
        cutoff = time.monotonic() - self.config.idle_evict_s
        max_keys = self.config.evict_max_keys
        for name in [n for n, d in self.docs.items() if d.last_used < cutoff]:
            meta = self.metas.get(name)
            if meta is None or meta.keys <= max_keys:
                del self.docs[name]

    def _maybe_compact(self, name: str) -> None:
        meta = self.metas.get(name)
        crdt = self.docs.get(name)
        if meta is None or crdt is None:
            return
        if meta.log_b <= max(meta.snap_b, self.config.compact_min_log_bytes):
            return
        self.compact(name)

    def compact(self, name: str, txn: Any | None = None) -> None:
        """Fold ``name``'s update log into a new snapshot, in one LMDB transaction.

        The snapshot put and the log deletes commit atomically, so a crash at any
        point leaves either the old snapshot + full log or the new snapshot: never
        a state with updates missing. Readers are never blocked (LMDB MVCC).
        Runs in ``txn`` if given (a group's), else in a transaction of its own.
        """
        if txn is None:
            before, gc_before = self.metas[name], self.gc.get(name)
            try:
                with self.env.env.begin(write=True) as own:
                    self.compact(name, own)
            except BaseException:
                # The transaction aborted: the bookkeeping must not claim otherwise
                # (found in review: later writes would have skipped log entries).
                self.metas[name] = before
                if gc_before is not None:
                    self.gc[name] = gc_before
                raise
            return
        meta = self.metas[name]
        tables = self.env.tables
        crdt = self.load_doc(name, txn)
        snapshot = crdt.snapshot()
        txn.put(name.encode(), snapshot, db=tables["snap"])
        cursor = txn.cursor(db=tables["log"])
        end = K.log_key(name, meta.seq)
        if cursor.set_range(K.log_key(name, meta.snap_seq)):
            while bytes(cursor.key()) < end:
                if not cursor.delete():
                    break
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
        txn.put(name.encode(), new.pack(), db=tables["docs"])
        self.metas[name] = new
        self.compactions += 1
        self._start_collect(name, crdt, snapshot, txn)

    def _start_collect(self, name: str, crdt: CrdtDocument, snapshot: bytes, txn: Any) -> None:
        """Garbage-collect stable overwrites out of a new snapshot, off this thread.

        Parsing costs ~5 us per struct in Python (seconds for a million-key
        document), so a collector thread does it and the writer installs the
        result between groups (:meth:`_install_collected`). Skipped when the
        state vector says there is little to gain: every clock not yet
        collected is a struct, and about two per live key are kept.
        """
        mode = self.config.gc
        if mode is GcMode.OFF:
            return
        state = replace(self.gc.get(name) or GcState())
        known = decode_state_vector(crdt.state_vector())
        if mode is GcMode.SOLO:
            # Advanced at every compaction, even one that starts no collection, so
            # the next collection's frontier is one compaction old, not older.
            frontier = state.previous
            state.previous = known
            self.gc[name] = state
            txn.put(K.gc_record_key(name), state.pack(), db=self.env.tables["meta"])
        else:
            frontier = state.frontier
        if not frontier or name in self._collecting:
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
        live = self.metas[name].keys
        garbage = stable * (present - live) // present if present > 0 else 0
        if garbage < max(present * _MIN_GARBAGE_SHARE, _MIN_GARBAGE):
            return
        snap_seq = self.metas[name].seq
        shape = _shape(crdt)

        replica = self.env.replica_id

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
                self._queue.put(_Collected(name, snap_seq, known, frontier, None, None, exc))
            else:
                self._queue.put(_Collected(name, snap_seq, known, frontier, result, fresh, None))

        thread = threading.Thread(target=run, name=f"edgestate-gc-{name}", daemon=True)
        # Started before it is registered: another thread may join it as soon as it
        # is (found under load). Its result is installed on this thread, after this job.
        thread.start()
        self._collecting[name] = thread

    def collector(self, name: str) -> threading.Thread | None:
        """The thread collecting ``name`` now, if any (any thread may ask)."""
        return self._collecting.get(name)

    def _install_collected(self, done: _Collected) -> None:
        """Write a collected snapshot, if it still describes the current compaction."""
        self._collecting.pop(done.name).join()
        if done.error is not None:
            log.error("cannot garbage-collect %r, keeping its history: %r", done.name, done.error)
            return
        meta = self.metas.get(done.name)
        result = done.result
        if result is None or meta is None or meta.snap_seq != done.snap_seq:
            return  # nothing to collect, or compacted again meanwhile: next time
        tables = self.env.tables
        name = done.name
        with self.env.env.begin(write=True) as txn:
            since: list[bytes] = []
            cursor = txn.cursor(db=tables["log"])
            prefix = K.doc_prefix(name)
            if cursor.set_range(K.log_key(name, meta.snap_seq)):
                for key, value in cursor:
                    if not bytes(key).startswith(prefix):
                        break
                    since.append(bytes(value))
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
            old = self.gc.get(name) or GcState()
            state = replace(
                old,
                ranges=old.ranges.union(result.ranges),
                rehung=old.rehung.union(result.rehung),
                floor=_vector_max(old.floor, done.frontier),
                collected_items=old.collected_items + result.items_before - result.items_after,
            )
            new = replace(meta, snap_b=len(result.update))
            txn.put(name.encode(), result.update, db=tables["snap"])
            txn.put(K.gc_record_key(name), state.pack(), db=tables["meta"])
            txn.put(name.encode(), new.pack(), db=tables["docs"])
        self.gc[name] = state
        self.metas[name] = new
        self.collections += 1
        for listener in list(self.collected_listeners):
            try:
                listener(name)
            except Exception:
                log.exception("a collection listener failed")
        if fresh is not None:
            self.docs[name] = fresh
        else:
            # Not caught up (see _caught_up): rebuilt from the collected snapshot
            # and the log on next use instead.
            self.docs.pop(name, None)

    def _caught_up(
        self, name: str, fresh: CrdtDocument | None, since: list[bytes]
    ) -> CrdtDocument | None:
        """The collected CRDT with the writes logged since its snapshot, if it
        matches the live one (same clocks, same keys); else None."""
        live = self.docs.get(name)
        if fresh is None or live is None or name in self._loading:
            return None
        fresh.load(None, since)
        fresh.last_used = live.last_used
        if _same_shape(fresh, decode_state_vector(live.state_vector()), _shape(live)):
            return fresh
        log.error("the collected CRDT of %r does not match the live one; rebuilding", name)
        return None

    def job_gc_frontier(self, doc: str, frontier: dict[int, int]) -> Callable[[_Group], None]:
        """A job recording the cluster's stable frontier of ``doc``."""

        def run(group: _Group) -> None:
            if doc not in self.metas:
                raise UnknownDocumentError(f"no document named {doc!r}")
            state = replace(self.gc.get(doc) or GcState(), frontier=dict(frontier))
            group.txn.put(K.gc_record_key(doc), state.pack(), db=self.env.tables["meta"])
            group.dirty = True
            # Installed now: on a failed commit the next call brings it again.
            self.gc[doc] = state

        return run

    def job_merge_gc(
        self, doc: str, ranges: Ranges, rehung: Ranges, floor: dict[int, int]
    ) -> Callable[[_Group], None]:
        """A job folding another node's collection record into ours.

        A node that bootstrapped from a collected copy holds that history without
        having collected it, and one that kept the full history would take (and
        relay) a stale write the collector refuses, which would then refuse that
        member's every later update (found in review). Knowing the collector's
        ranges, both refuse the same writes.
        """

        def run(group: _Group) -> None:
            if doc not in self.metas:
                return  # nothing of it here yet; a later diff brings it, and this again
            old = self.gc.get(doc) or GcState()
            state = replace(
                old,
                ranges=old.ranges.union(ranges),
                rehung=old.rehung.union(rehung),
                floor=_vector_max(old.floor, floor),
            )
            if state == old:
                return
            group.txn.put(K.gc_record_key(doc), state.pack(), db=self.env.tables["meta"])
            group.dirty = True
            self.gc[doc] = state

        return run

    def check_stale_update(self, crdt: CrdtDocument, update: bytes) -> None:
        """Refuse an update that builds on history this store collected."""
        state = self.gc.get(crdt.name)
        if state is not None and state.ranges.by_client:
            self._blocks_of_collected(crdt, update, state)

    def job_diff(self, doc: str, remote: bytes | None) -> Callable[[_Group], bytes]:
        """A job computing what a replica at ``remote`` lacks, refusing a stale one."""

        def run(group: _Group) -> bytes:
            crdt = group.doc(doc)
            state = self.gc.get(doc)
            if remote is not None and state is not None and state.ranges.by_client:
                try:
                    theirs = decode_state_vector(remote)
                except (ValueError, IndexError) as exc:
                    raise InvalidUpdateError(f"cannot decode state vector: {exc}") from exc
                why = partial_replica(theirs, state.floor)
                if why is not None:
                    raise StaleReplicaError(f"cannot sync {doc!r} with this replica: {why}")
            return crdt.diff(remote)

        return run

    def _flush_loop(self) -> None:
        interval = self.config.batched_flush_ms / 1000
        while not self._flush_stop.wait(interval):
            try:
                self.env.env.sync(True)
            except Exception:
                log.exception("background fsync failed")

    # --- job bodies (run on the writer thread) ------------------------------------

    def job_write(self, ops: Sequence[WriteOp]) -> Callable[[_Group], list[int | None]]:
        """A job adding ``ops`` to the group's write plans, all or nothing.

        Values were validated by the caller; type and overflow checks happen here
        against the simulated state, before anything is mutated.
        """

        def run(group: _Group) -> list[int | None]:
            by_doc: dict[str, list[WriteOp]] = {}
            order: list[tuple[str, int]] = []
            for op in ops:
                lst = by_doc.setdefault(op.doc, [])
                order.append((op.doc, len(lst)))
                lst.append(op)
            plans = {name: group.plan(name) for name in by_doc}
            done: dict[str, list[int | None]] = {}
            try:
                for name, doc_ops in by_doc.items():
                    done[name] = plans[name].add(doc_ops)
            except EdgestateError:
                for name in done:  # undo this job's part in the other documents' plans
                    plans[name].rollback_last()
                raise
            return [done[name][i] for name, i in order]

        return run

    def job_apply(
        self, doc: str, update: bytes, origin: str | None, create: bool
    ) -> Callable[[_Group], bool]:
        """A job integrating a remote update; True if it changed anything."""

        def run(group: _Group) -> bool:
            update_b = bytes(update)
            check_v1_update(update_b)
            state = self.gc.get(doc)
            if state is not None and state.ranges.by_client:
                # One parse serves both: the content check and the stale check.
                blocks = self._blocks_of_collected(group.doc(doc), update_b, state)
                stale_checked = True
            else:
                blocks = update_blocks(update_b)
                stale_checked = False
            created = create and doc not in self.metas
            if created:
                self._create(group, doc)
            crdt = group.doc(doc)
            if blocks is not None and not _ready(crdt, blocks):
                # It builds on updates we have not seen. pycrdt would integrate
                # parts of it out of order (measured: a map entry without an origin
                # shows up while the state vector does not move), so hold it
                # until every block's gap is filled.
                self._stash(group, doc, update_b, blocks)
                return False
            try:
                added, changed = self._apply_checked(crdt, update_b, stale_checked)
            except EdgestateError:
                if created:  # a refused update must not leave an empty document behind
                    del self.metas[doc]
                    self.docs.pop(doc, None)
                    self.dirty_metas.discard(doc)
                raise
            group.persist(doc, added, crdt.materialized(changed), origin)
            if added is not None and self._pending_for(group, doc):
                self._drain_pending(group, doc, crdt, origin)
            return added is not None

        return run

    def _blocks_of_collected(
        self, crdt: CrdtDocument, update: bytes, state: GcState
    ) -> list[tuple[int, int]] | None:
        """``update_blocks`` for a document with collected history, refusing a stale
        update in the same parse (found re-reading the change: it was parsed twice
        on the sync path)."""
        headers: list[tuple[int, int]] = []
        try:
            clients, _ = parse_update(update, headers)
        except IndexError:
            return None  # truncated: pycrdt refuses it with its own error
        except ValueError as exc:
            raise InvalidUpdateError(f"update holds a struct this store refuses: {exc}") from exc
        known = decode_state_vector(crdt.state_vector())
        why = stale_in(clients, state.ranges, state.rehung, known)
        if why is not None:
            raise StaleReplicaError(f"update for {crdt.name!r} refused: {why}")
        return headers

    def _apply_checked(
        self, crdt: CrdtDocument, update: bytes, stale_checked: bool = False
    ) -> tuple[bytes | None, set[str]]:
        """Apply a remote update, refusing one that writes a key this store cannot hold.

        Found in review: a key that is empty or over max_key_bytes (from a peer or a
        Yjs client) broke the materialized table -- an LMDB key over 511 bytes even
        failed the whole group commit. pycrdt has already integrated the update in
        memory, so on refusal the CRDT is dropped and rebuilt from the log.
        """
        # Here too, not only at the door: a held update is drained after
        # collections that happened while it waited.
        if not stale_checked:
            self.check_stale_update(crdt, update)
        added, changed = crdt.apply_remote(update)
        for key in changed:
            try:
                K.encode_key(key, self.config.max_key_bytes)
            except EdgestateError as exc:
                self.docs.pop(crdt.name, None)
                raise InvalidUpdateError(
                    f"update for {crdt.name!r} writes a key this store refuses: {exc}"
                ) from exc
        return added, changed

    def _pending_for(self, group: _Group, doc: str) -> list[_Held]:
        pending = self.pending.get(doc)
        if pending is None:
            pending = []
            prefix = K.doc_prefix(doc)
            refused: list[bytes] = []
            cursor = group.txn.cursor(db=self.env.tables["pending"])
            if cursor.set_range(prefix):
                for key, value in cursor:
                    if not bytes(key).startswith(prefix):
                        break
                    update = bytes(value)
                    try:
                        blocks = update_blocks(update) or []
                    except InvalidUpdateError as exc:
                        # Held before content refs were checked at the door.
                        log.warning("dropped a held update of %r: %s", doc, exc)
                        refused.append(bytes(key))
                        continue
                    pending.append((bytes(key), update, blocks))
            for key in refused:
                group.txn.delete(key, db=self.env.tables["pending"])
                group.dirty = True
            self.pending[doc] = pending
        return pending

    def _stash(self, group: _Group, doc: str, update: bytes, blocks: list[tuple[int, int]]) -> None:
        pending = self._pending_for(group, doc)
        table = self.env.tables["pending"]
        if len(pending) >= MAX_PENDING:
            # Bounded: the oldest gap is given up; anti-entropy (a state-vector
            # diff) brings those changes again in causal order.
            old_key = pending.pop(0)[0]
            group.txn.delete(old_key, db=table)
            log.warning("pending updates of %r over %d; dropped the oldest", doc, MAX_PENDING)
        meta = self.metas[doc]
        key = K.log_key(doc, meta.seq)
        meta.seq += 1
        self.dirty_metas.add(doc)
        group.dirty = True
        group.txn.put(key, update, db=table)
        pending.append((key, update, blocks))

    def _drain_pending(
        self, group: _Group, doc: str, crdt: CrdtDocument, origin: str | None
    ) -> None:
        pending = self.pending[doc]
        progress = True
        while progress and pending:
            progress = False
            for entry in list(pending):
                key, update, blocks = entry
                if not _ready(crdt, blocks):
                    continue
                pending.remove(entry)
                group.txn.delete(key, db=self.env.tables["pending"])
                try:
                    added, changed = self._apply_checked(crdt, update)
                except EdgestateError as exc:
                    log.warning("dropped a pending update of %r: %s", doc, exc)
                    if doc not in self.docs:
                        return  # the CRDT was dropped; the rest waits for the next apply
                    continue
                group.persist(doc, added, crdt.materialized(changed), origin)
                progress = True

    def job_create(self, doc: str) -> Callable[[_Group], bool]:
        """A job creating an empty document; False if it already existed."""

        def run(group: _Group) -> bool:
            if doc in self.metas:
                return False
            self._create(group, doc)
            return True

        return run

    def _create(self, group: _Group, doc: str) -> None:
        self.metas[doc] = DocMeta(created_ms=int(time.time() * 1000))
        self.dirty_metas.add(doc)
        group.dirty = True

    def job_read(self, doc: str, fn: Callable[[CrdtDocument], T]) -> Callable[[_Group], T]:
        """A job reading the live CRDT (state vectors, diffs)."""

        def run(group: _Group) -> T:
            return fn(group.doc(doc))

        return run


def _vector_max(a: dict[int, int], b: dict[int, int]) -> dict[int, int]:
    return {c: max(a.get(c, 0), b.get(c, 0)) for c in a.keys() | b.keys()}


def _shape(crdt: CrdtDocument) -> tuple[int, int]:
    return len(crdt.root), len(crdt.counters)


def _same_shape(crdt: CrdtDocument, known: dict[int, int], shape: tuple[int, int]) -> bool:
    """A cheap cross-check that a rewrite lost nothing: same clocks, same key counts."""
    return decode_state_vector(crdt.state_vector()) == known and _shape(crdt) == shape


def check_value(op: Set, config: StoreConfig) -> None:
    """Raise if a Set's value is not bytes within the size limit."""
    if not isinstance(op.value, bytes | bytearray | memoryview):
        raise ValueTooLargeError(f"values are bytes, got {type(op.value).__name__}")
    if len(op.value) > config.max_value_bytes:
        raise ValueTooLargeError(
            f"value for {op.doc}/{op.key} is {len(op.value)} bytes, over the limit of "
            f"{config.max_value_bytes}"
        )
