"""The store's single writer thread: the job queue, the loop and group commit.

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

The writer owns every live CRDT and the bookkeeping (``docs``, ``metas``, ``gc``);
only its thread touches them. Its helpers run on that thread too: the job
bodies (:mod:`~edgestate.store.jobs`), the causal hold of out-of-order updates
(:mod:`~edgestate.store.hold`), compaction and the install of garbage
collections (:mod:`~edgestate.store.compaction`), and big-document loads
(:mod:`~edgestate.store.loading`), whose threads hand results back through the
queue (:meth:`Writer.post`). Dependencies point one way: this module imports
the helpers, and they see the writer only as the narrow
:class:`~edgestate.store.group.WriterState`; the jobs and the group commit's
state (:class:`~edgestate.store.group.Group`) live there too.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, TypeVar

from edgestate.errors import EdgestateError, StoreClosedError, StoreError
from edgestate.store.changes import ChangeHub
from edgestate.store.compaction import Collected, Compactor
from edgestate.store.crdt import CrdtDocument
from edgestate.store.env import DocMeta, Environment
from edgestate.store.gc import GcState
from edgestate.store.group import Group, Job, resolve
from edgestate.store.hold import CausalHold
from edgestate.store.loading import Loaded, Loader, read_doc
from edgestate.store.types import Durability, StoreConfig

if TYPE_CHECKING:
    from edgestate.store.jobs import Work

log = logging.getLogger(__name__)

T = TypeVar("T")

_STOP = object()


class Writer:
    """Owns the write side of a store; see the module docstring."""

    def __init__(self, env: Environment, config: StoreConfig, hub: ChangeHub) -> None:
        self.env = env
        self.config = config
        self.hub = hub
        self.docs: dict[str, CrdtDocument] = {}
        self.metas: dict[str, DocMeta] = {}
        self.dirty_metas: set[str] = set()
        self.gc: dict[str, GcState] = {}
        self.hold = CausalHold(self)
        self.loader = Loader(self, self.post)
        self.compactor = Compactor(self, self.post, self.loader)
        self._last_evict = time.monotonic()
        self._submit_lock = threading.Lock()
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._closed = False
        # Jobs waiting for the end of the loop's turn (submit_async_many(after_turn=True)).
        self._after_turn: list[Job[Any]] = []
        self._load_metas()
        self.commits = 0
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

    def submit(self, work: Work[T]) -> Future[T]:
        """Queue a job; its future resolves after the commit holding it is durable."""
        future: Future[T] = Future()
        self._enqueue([Job(work.run, work.weight, future, docs=work.docs)])
        return future

    def submit_async(self, work: Work[T]) -> asyncio.Future[T]:
        """Like :meth:`submit`, for a caller on a running event loop."""
        return self.submit_async_many([work])[0]

    def submit_async_many(
        self, works: Sequence[Work[Any]], *, after_turn: bool = False
    ) -> list[asyncio.Future[Any]]:
        """Queue independent jobs in one hand-off (a node answering a worker's
        socket read queues every write of it at once); each settles on its own.

        ``after_turn``: hand them to the writer thread only once the loop has run
        the callbacks ready now. The thread, once woken, holds the GIL for the
        group's Python work (a few hundred us), so the sends an announced update
        just scheduled (to Yjs clients, to peers) would wait behind its
        transaction; queued after them, they go first. Jobs submitted while some
        wait go behind them, so the writer still sees submission order.
        """
        loop = asyncio.get_running_loop()
        jobs = [
            Job(w.run, w.weight, loop=loop, afut=loop.create_future(), docs=w.docs) for w in works
        ]
        if after_turn or self._after_turn:
            if not self._after_turn:
                loop.call_soon(self._hand_over_after_turn)
            self._after_turn.extend(jobs)
        else:
            self._enqueue(jobs)
        return [job.afut for job in jobs if job.afut is not None]

    def _hand_over_after_turn(self) -> None:
        jobs, self._after_turn = self._after_turn, []
        try:
            self._enqueue(jobs)
        except StoreClosedError as exc:
            for job in jobs:
                if job.afut is not None and not job.afut.done():
                    job.afut.set_exception(exc)

    def _enqueue(self, jobs: list[Job[Any]]) -> None:
        # Under the lock close() takes too, so no job lands behind the stop
        # marker, where nothing would ever run or fail it (found in review).
        with self._submit_lock:
            if self._closed:
                raise StoreClosedError("the store is closed")
            put = self._queue.put
            for job in jobs:
                put(job)

    def post(self, done: Loaded | Collected) -> None:
        """Hand a finished background load or collection to the writer thread."""
        self._queue.put(done)

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
        tables = self.env.tables
        with self.env.read() as txn:
            for name, raw in txn.cursor(db=tables.docs):
                self.metas[bytes(name).decode()] = DocMeta.unpack(raw)
            for name, record in tables.gc_records(txn):
                try:
                    self.gc[name] = GcState.unpack(record)
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
        crdt = read_doc(self, name, txn, threaded=False)
        self.docs[name] = crdt
        return crdt

    def _loop(self) -> None:
        idle_check = max(1.0, self.config.idle_evict_s / 4)
        ready: list[Job[Any]] = []  # jobs released by a finished load, in order
        stopping = False
        while True:
            if ready:
                incoming: Any = ready.pop(0)
            elif stopping and not self.loader.busy and not self.compactor.collecting:
                return
            else:
                if time.monotonic() - self._last_evict > idle_check:
                    self._evict_idle()  # also under steady load, not only when idle
                try:
                    incoming = self._queue.get(timeout=idle_check)
                except queue.Empty:
                    continue
            jobs: list[Job[Any]] = []
            weight = 0
            while True:
                if incoming is _STOP:
                    stopping = True
                elif isinstance(incoming, Loaded):
                    ready.extend(self.loader.landed(incoming))
                elif isinstance(incoming, Collected):
                    self.compactor.land(incoming)
                elif not self.loader.park(incoming):
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

    def _run_group(self, jobs: list[Job[Any]]) -> None:
        outcomes: list[tuple[Job[Any], Any, BaseException | None]] = []
        txn = self.env.env.begin(write=True)
        group = Group(self, txn)
        try:
            for job in jobs:
                if not job.start():
                    continue
                try:
                    outcomes.append((job, job.run(group), None))
                except EdgestateError as exc:
                    outcomes.append((job, None, exc))
            group.flush()
            if group.events:
                # Remote updates go out while this commit is fsynced (see changes.py).
                self.hub.publish_accepted(group.events)
            if group.dirty:
                docs_table = self.env.tables.docs
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
            resolve([(job, None, error) for job in jobs])
            return
        finally:
            self.dirty_metas.clear()
        resolve(outcomes)
        if group.events:
            self.hub.publish(group.events)
        for name in group.touched:
            try:
                self.compactor.maybe_compact(name)
            except Exception:
                # The log stays as it was (the compaction transaction aborted), so
                # nothing is lost; it is retried after the document's next write.
                log.exception("compaction of %r failed", name)

    def _forget(self, names: set[str]) -> None:
        for name in names:
            self.docs.pop(name, None)
            self.hold.forget(name)
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

    def _flush_loop(self) -> None:
        interval = self.config.batched_flush_ms / 1000
        while not self._flush_stop.wait(interval):
            try:
                self.env.env.sync(True)
            except Exception:
                log.exception("background fsync failed")
