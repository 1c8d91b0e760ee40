"""The store: named CRDT documents over one LMDB environment.

Reads (``get``, ``scan``, ``documents``) run on the caller's thread against the
materialized table and never touch a CRDT. Writes go through the writer thread's
group commit (:mod:`edgestate.store.writer`): each operation builds its job once
(:mod:`edgestate.store.jobs`); the sync methods block until the write is
durable, the ``a``-prefixed ones await the same job.

A read-only store imports neither pycrdt nor asyncio (~100 ms at start, which
``edgestate kv get`` would pay for one lookup): the writer, which needs both, is
imported when a writable store starts it, asyncio when an async method or a
change stream is first used.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from edgestate.errors import EdgestateError, ReadOnlyStoreError, StoreError
from edgestate.store import jobs
from edgestate.store import keys as K
from edgestate.store.announce import SubmitListener, Walked, announceable
from edgestate.store.changes import BatchListener, ChangeHub, Listener
from edgestate.store.checks import check_frontier, check_ops
from edgestate.store.env import Environment, open_environment
from edgestate.store.gc import GcRecord, GcState, Ranges
from edgestate.store.reads import LOCAL_PREFIX, StoreReads
from edgestate.store.types import (
    ChangeEvent,
    Delete,
    GcStatus,
    Incr,
    Set,
    StoreConfig,
    WriteOp,
)

if TYPE_CHECKING:
    import asyncio
    from concurrent.futures import Future

    from edgestate.store.jobs import Work
    from edgestate.store.stream import ChangeStream
    from edgestate.store.writer import Writer

T = TypeVar("T")


class Store(StoreReads):
    """A data directory's documents. Open with :meth:`Store.open`; thread-safe."""

    def __init__(self, env: Environment, config: StoreConfig) -> None:
        super().__init__(env, config)
        self._hub = ChangeHub()
        self._writer: Writer | None = None
        try:
            if not env.readonly:
                from edgestate.store.writer import Writer

                self._writer = Writer(env, config, self._hub)
        except BaseException:
            env.close()  # a refused open must not keep the writer lock
            raise

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        config: StoreConfig | None = None,
        *,
        readonly: bool = False,
        create: bool = True,
    ) -> Store:
        """Open the store in ``path`` (created if absent, if ``create`` and not
        ``readonly``; else a missing store is :class:`StoreMissingError`).

        A writable open takes the directory's writer lock: a second writer gets
        :class:`StoreLockedError`. Read-only opens may run beside a writer. A
        ``data.mdb`` shorter than its meta pages say is :class:`StoreCorruptError`.
        """
        config = config or StoreConfig()
        env = open_environment(Path(path), config, readonly=readonly, create=create)
        return cls(env, config)

    def close(self) -> None:
        """Finish queued writes, flush and close. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._writer is not None:
            self._writer.close()
        self._env.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- documents ----------------------------------------------------------------

    def create_document(self, name: str) -> bool:
        """Create an empty document; False if it already existed."""
        created = self._run(self._create(name))
        self._remember(name)
        return created

    async def acreate_document(self, name: str) -> bool:
        """Async form of :meth:`create_document` (its commit is fsynced off the loop)."""
        created = await self._arun(self._create(name))
        self._remember(name)
        return created

    def _create(self, name: str) -> Work[bool]:
        K.check_doc_name(name)
        return jobs.create(name)

    def loaded_documents(self) -> list[str]:
        """Documents whose CRDT is in memory now (the rest are read from LMDB only)."""
        return sorted(self._writer.docs) if self._writer is not None else []

    def stats(self) -> dict[str, Any]:
        """Environment-level figures: file size, pages, readers, replica id."""
        self._check_open()
        info = self._env.env.info()
        stat = self._env.env.stat()
        data_file = self._env.path / "data.mdb"
        out: dict[str, Any] = {
            "path": str(self._env.path),
            "replica_id": self._env.replica_id,
            "file_bytes": data_file.stat().st_size if data_file.exists() else 0,
            "map_size": info["map_size"],
            "last_txnid": info["last_txnid"],
            "readers": info["num_readers"],
            "page_size": stat["psize"],
            "documents": len(self.documents()),
        }
        if self._writer is not None:
            out["commits"] = self._writer.commits
            out["compactions"] = self._writer.compactor.compactions
            out["collections"] = self._writer.compactor.collections
        return out

    def clear_stale_readers(self) -> int:
        """Free reader slots of processes that died inside a read transaction.

        A dead reader's slot pins the snapshot it read, so LMDB cannot reuse the
        pages written since and the file grows; a node calls this when one of its
        reading workers dies. Returns how many slots were freed.
        """
        self._check_open()
        return int(self._env.env.reader_check())

    # --- writes -------------------------------------------------------------------

    def submit(self, ops: Sequence[WriteOp]) -> Future[list[int | None]]:
        """Queue an atomic batch; the future resolves once it is durable."""
        work = self._write(ops)  # validated first: a bad op is named even when read-only
        return self._w().submit(work)

    def batch(self, ops: Sequence[WriteOp]) -> list[int | None]:
        """Apply ``ops`` atomically and durably; a counter's new total per ``Incr``."""
        return self.submit(ops).result()

    async def abatch(self, ops: Sequence[WriteOp]) -> list[int | None]:
        """Async form of :meth:`batch` (shares the group commit with other callers)."""
        return await self._arun(self._write(ops))

    def abatches(self, batches: Sequence[Sequence[WriteOp]]) -> list[asyncio.Future[Any]]:
        """Queue independent atomic batches in one hand-off to the writer, on a
        running loop: per batch, a future of what :meth:`abatch` returns (or raises)."""
        works: list[Work[Any]] = []
        for ops in batches:
            try:
                works.append(self._write(ops))
            except EdgestateError as exc:  # refused up front: it alone fails
                works.append(jobs.refused(exc))
        return self._w().submit_async_many(works)

    def _write(self, ops: Sequence[WriteOp]) -> Work[list[int | None]]:
        ops = list(ops)
        check_ops(ops, self.config, self._require_doc)
        return jobs.write(ops)

    def set(self, doc: str, key: str, value: bytes) -> None:
        """Durably write ``value`` under ``key``."""
        self.batch([Set(doc, key, value)])

    def delete(self, doc: str, key: str) -> None:
        """Durably remove ``key`` (no-op if absent)."""
        self.batch([Delete(doc, key)])

    def incr(self, doc: str, key: str, delta: int = 1) -> int:
        """Durably add ``delta`` to the counter at ``key``; returns the new total."""
        result = self.batch([Incr(doc, key, delta)])[0]
        assert result is not None
        return result

    # --- replication --------------------------------------------------------------

    def apply_update(
        self,
        doc: str,
        update: bytes,
        *,
        origin: str | None = None,
        create: bool = False,
        record: GcRecord | None = None,
    ) -> bool:
        """Integrate a remote Yjs v1 update durably; True if it changed local state.

        Idempotent and commutative. ``create`` makes the document if it is new.
        ``record`` is the collection record that came with the update (see
        :meth:`diff_with_record`): merged in the same commit, so this store never
        holds collected history without knowing it was collected.
        """
        return self._run(self._apply(doc, update, origin, create, record))

    async def aapply_update(
        self,
        doc: str,
        update: bytes,
        *,
        origin: str | None = None,
        create: bool = False,
        record: GcRecord | None = None,
    ) -> bool:
        """Async form of :meth:`apply_update`."""
        return await self._arun(self._apply(doc, update, origin, create, record))

    def submit_update(
        self,
        doc: str,
        update: bytes,
        *,
        origin: str | None = None,
        create: bool = False,
        record: GcRecord | None = None,
    ) -> asyncio.Future[bool]:
        """Queue :meth:`apply_update` at once; the future resolves once it is durable.

        For a caller streaming updates in order (a Yjs client, a sync peer): it
        need not wait for one update's fsync before queueing the next, so a burst
        shares group commits, and the writer sees the update now rather than when
        a task wrapping :meth:`aapply_update` first runs (a loop turn, which on a
        busy loop is milliseconds per relay hop). Must be called on a running
        event loop. With an ``origin``, an update the writer is sure to take is
        also handed to the submit listeners now (:mod:`edgestate.store.announce`).
        """
        writer = self._w()
        walked = (
            announceable(update, writer.gc.get(doc), self.config.max_key_bytes)
            if origin is not None and record is None and self._hub.announcing
            else None
        )
        announced = walked is not None
        work = self._apply(doc, update, origin, create, record, walked)
        if announced:
            assert origin is not None
            # First, so what the listeners schedule runs before the writer is handed
            # the job (after_turn): the sends do not wait behind its transaction.
            self._hub.publish_submitted(doc, update, origin)
        return writer.submit_async_many([work], after_turn=announced)[0]

    def subscribe_submitted(self, listener: SubmitListener) -> Callable[[], None]:
        """Call ``listener(doc, update, origin)`` on the submitting thread for each
        remote update announced at submission (:mod:`edgestate.store.announce`); its
        later :class:`ChangeEvent` says ``announced``. Returns an unsubscribe function."""
        return self._hub.subscribe_submitted(listener)

    def _apply(
        self,
        doc: str,
        update: bytes,
        origin: str | None,
        create: bool,
        record: GcRecord | None,
        walked: Walked | None = None,
    ) -> Work[bool]:
        K.check_doc_name(doc)
        if not create:
            self._require_doc(doc)
        return jobs.apply(doc, update, origin, create, record, walked)

    def state_vector(self, doc: str) -> bytes:
        """The document's Yjs v1 state vector."""
        return self._run(self._state_vector(doc))

    async def astate_vector(self, doc: str) -> bytes:
        """Async form of :meth:`state_vector`."""
        return await self._arun(self._state_vector(doc))

    def _state_vector(self, doc: str) -> Work[bytes]:
        self._require_doc(doc)
        return jobs.state_vector(doc)

    def diff(self, doc: str, remote_state_vector: bytes | None = None) -> bytes:
        """A v1 update with what a peer at ``remote_state_vector`` lacks (None: all).

        Raises :class:`StaleReplicaError` for a replica holding part of history this
        store garbage-collected: it would integrate the rewritten items differently.
        """
        return self._run(self._diff(doc, remote_state_vector))

    async def adiff(self, doc: str, remote_state_vector: bytes | None = None) -> bytes:
        """Async form of :meth:`diff`."""
        return await self._arun(self._diff(doc, remote_state_vector))

    def _diff(self, doc: str, remote_state_vector: bytes | None) -> Work[bytes]:
        self._require_doc(doc)
        return jobs.diff(doc, remote_state_vector)

    def diff_with_record(
        self, doc: str, remote_state_vector: bytes | None = None
    ) -> tuple[bytes, GcRecord | None]:
        """:meth:`diff` and the collection record of the history it carries (None
        if nothing was collected), for the receiver to apply together: a replica
        bootstrapped from collected history without its record would serve, and
        take writes from, replicas this store refuses."""
        return self._run(self._diff_with_record(doc, remote_state_vector))

    async def adiff_with_record(
        self, doc: str, remote_state_vector: bytes | None = None
    ) -> tuple[bytes, GcRecord | None]:
        """Async form of :meth:`diff_with_record`."""
        return await self._arun(self._diff_with_record(doc, remote_state_vector))

    def _diff_with_record(
        self, doc: str, remote_state_vector: bytes | None
    ) -> Work[tuple[bytes, GcRecord | None]]:
        self._require_doc(doc)
        return jobs.diff_with_record(doc, remote_state_vector)

    def set_gc_frontier(self, doc: str, frontier: Mapping[int, int]) -> None:
        """Record a state vector (client -> clock) every replica of ``doc`` has reached.

        With ``GcMode.CLUSTER``, compaction collects overwritten entries covered by
        it. The caller vouches for it: the sync layer derives it from every cluster
        member's reports, one round behind, so no write still in flight builds on
        what is collected (see edgestate.sync.frontier).
        """
        self._run(self._gc_frontier(doc, frontier))

    async def aset_gc_frontier(self, doc: str, frontier: Mapping[int, int]) -> None:
        """Async form of :meth:`set_gc_frontier`."""
        await self._arun(self._gc_frontier(doc, frontier))

    def _gc_frontier(self, doc: str, frontier: Mapping[int, int]) -> Work[None]:
        self._require_doc(doc)
        return jobs.gc_frontier(doc, check_frontier(frontier))

    def put_local(self, name: str, data: bytes) -> None:
        """Durably save node-local metadata (never replicated; see :meth:`get_local`)."""
        self._run(jobs.put_local(LOCAL_PREFIX + name.encode(), data))

    async def aput_local(self, name: str, data: bytes) -> None:
        """Durably save node-local metadata (the sync layer's member reports)."""
        await self._arun(jobs.put_local(LOCAL_PREFIX + name.encode(), data))

    def gc_record(self, doc: str) -> GcState | None:
        """A copy of ``doc``'s collection record: ranges, re-hang points, floor."""
        self._require_doc(doc)
        state = self._w().gc.get(doc)
        return replace(state) if state is not None else None

    async def amerge_gc(
        self, doc: str, ranges: Ranges, rehung: Ranges, floor: Mapping[int, int]
    ) -> None:
        """Fold another node's collection record of ``doc`` into ours (see
        ``Writer.job_merge_gc``); a document not here yet is skipped."""
        K.check_doc_name(doc)
        await self._arun(jobs.merge_gc(doc, ranges, rehung, dict(floor)))

    def gc_status(self, doc: str) -> GcStatus:
        """What garbage collection has done to ``doc``."""
        self._require_doc(doc)
        if self._writer is not None:
            state = self._writer.gc.get(doc)
        else:
            with self._env.read() as txn:
                raw = txn.get(K.gc_record_key(doc), db=self._env.tables.meta)
            try:
                state = GcState.unpack(bytes(raw)) if raw is not None else None
            except ValueError as exc:
                raise StoreError(f"garbage-collection record of {doc!r} is corrupt: {exc}") from exc
        if state is None:
            return GcStatus(self.config.gc, None, 0, 0)
        return GcStatus(
            self.config.gc,
            dict(state.frontier) if state.frontier is not None else None,
            state.collected_items,
            sum(len(r) for r in state.ranges.by_client.values()),
        )

    def compact(self, doc: str) -> None:
        """Fold ``doc``'s update log into a snapshot now (normally automatic).

        Returns once any garbage collection this compaction started (which runs
        on a thread of its own) is written too.
        """
        self._require_doc(doc)
        self._w()
        # A collection an automatic compaction started would make this one start
        # none (found under load: an older frontier, more garbage kept): let it
        # land first.
        self._settle_collection(doc)
        self._run(jobs.compact(doc))
        self._settle_collection(doc)

    def _settle_collection(self, doc: str) -> None:
        """Wait until no collection of ``doc`` is running or waiting to land."""
        while True:
            collector = self._w().compactor.collector(doc)
            if collector is not None:
                collector.join()  # its result is queued now
            # A job queued behind that result (or behind an install already under
            # way on the writer thread) completes only after it.
            self._run(jobs.barrier())
            if collector is None and self._w().compactor.collector(doc) is None:
                return  # (an automatic compaction may have started one meanwhile)

    # --- change subscription ------------------------------------------------------

    def subscribe(self, listener: Listener, *, early: bool = False) -> Callable[[], None]:
        """Call ``listener(ChangeEvent)`` on the writer thread after each durable commit.

        ``early``: remote updates once accepted, before their commit (see
        :mod:`edgestate.store.changes`). Keep it quick (hop to your own thread or
        loop). Returns an unsubscribe function.
        """
        return self._hub.subscribe(listener, early=early)

    def subscribe_batches(
        self, listener: BatchListener, *, early: bool = False
    ) -> Callable[[], None]:
        """:meth:`subscribe`, with all of a commit's events in one call (one hop to
        another thread or loop per commit, not per event)."""
        return self._hub.subscribe_batches(listener, early=early)

    def on_collected(self, listener: Callable[[str], None]) -> Callable[[], None]:
        """Call ``listener(doc)`` on the writer thread when a collection of ``doc``
        lands (the sync layer tells peers at once). Returns an unsubscribe function."""
        listeners = self._w().compactor.collected_listeners
        listeners.append(listener)

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                listeners.remove(listener)

        return unsubscribe

    def changes(
        self,
        maxsize: int = 10_000,
        *,
        early: bool = False,
        docs: Collection[str] | None = None,
        keep: Callable[[ChangeEvent], bool] | None = None,
    ) -> ChangeStream:
        """An async iterator of change events with a bounded buffer (see ChangeStream).

        ``early``: remote updates arrive once accepted, before their commit is
        durable (for relaying them on: see :mod:`edgestate.store.changes`).
        ``docs``: only the events of these documents. ``keep``: only the events it
        returns True for; called on the writer thread, so it must be quick and
        thread-safe (a commit with none left does not wake the loop).
        """
        from edgestate.store.stream import ChangeStream

        return ChangeStream(self._hub, maxsize, early=early, docs=docs, keep=keep)

    # --- internals ----------------------------------------------------------------

    def _w(self) -> Writer:
        self._check_open()
        if self._writer is None:
            raise ReadOnlyStoreError(f"{self._env.path} was opened read-only")
        return self._writer

    def _run(self, work: Work[T]) -> T:
        """Run ``work`` on the writer; return its result once it is durable."""
        return self._w().submit(work).result()

    async def _arun(self, work: Work[T]) -> T:
        """Async form of :meth:`_run`."""
        return await self._w().submit_async(work)
