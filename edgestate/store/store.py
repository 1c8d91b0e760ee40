"""The store: named CRDT documents over one LMDB environment.

Reads (``get``, ``scan``, ``documents``) run on the caller's thread against the
materialized table and never touch a CRDT. Writes go through the writer thread's
group commit (:mod:`edgestate.store.writer`); the sync methods block until the
write is durable, the ``a``-prefixed ones await the same future.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import lmdb

from edgestate.errors import (
    InvalidKeyError,
    ReadOnlyStoreError,
    StoreClosedError,
    StoreError,
    UnknownDocumentError,
    WrongTypeError,
)
from edgestate.store import keys as K
from edgestate.store.changes import ChangeHub, ChangeStream, Listener
from edgestate.store.crdt import TAG_COUNTER, CrdtDocument, unpack_i64
from edgestate.store.env import DocMeta, Environment, open_environment
from edgestate.store.gc import GcState, Ranges
from edgestate.store.types import (
    Delete,
    DocumentInfo,
    GcStatus,
    Incr,
    ScanPage,
    Set,
    StoreConfig,
    WriteOp,
)
from edgestate.store.writer import Writer, check_value

T = TypeVar("T")

MAX_SCAN_LIMIT = 10_000


class Store:
    """A data directory's documents. Open with :meth:`Store.open`; thread-safe."""

    def __init__(self, env: Environment, config: StoreConfig) -> None:
        self._env = env
        self.config = config
        self._hub = ChangeHub()
        try:
            self._writer: Writer | None = None if env.readonly else Writer(env, config, self._hub)
        except BaseException:
            env.close()  # a refused open must not keep the writer lock
            raise
        self._known_docs: set[str] = set()
        self._prefixes: dict[str, bytes] = {}
        self._kv = env.tables["kv"]
        self._closed = False

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        config: StoreConfig | None = None,
        *,
        readonly: bool = False,
    ) -> Store:
        """Open the store in ``path`` (created if absent, unless ``readonly``).

        A writable open takes the directory's writer lock: a second writer gets
        :class:`StoreLockedError`. Read-only opens may run beside a writer.
        """
        config = config or StoreConfig()
        return cls(open_environment(Path(path), config, readonly=readonly), config)

    @property
    def path(self) -> Path:
        """The data directory."""
        return self._env.path

    @property
    def replica_id(self) -> int:
        """This data directory's replica id (its CRDT client id)."""
        return self._env.replica_id

    @property
    def readonly(self) -> bool:
        """True if opened read-only."""
        return self._env.readonly

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
        K.check_doc_name(name)
        created = self._submit(self._w().job_create(name)).result()
        self._remember(name)
        return created

    async def acreate_document(self, name: str) -> bool:
        """Async form of :meth:`create_document` (its commit is fsynced off the loop)."""
        K.check_doc_name(name)
        created = await self._w().submit_async(self._w().job_create(name))
        self._remember(name)
        return created

    def has_document(self, name: str) -> bool:
        """True if ``name`` exists in this store."""
        if name in self._known_docs:
            return True
        self._check_open()
        with self._env.read() as txn:
            found = txn.get(name.encode(), db=self._env.tables["docs"]) is not None
        if found:
            self._remember(name)
        return found

    def _remember(self, name: str) -> None:
        self._prefixes[name] = K.doc_prefix(name)
        self._known_docs.add(name)

    def documents(self) -> list[str]:
        """Names of all documents, sorted."""
        self._check_open()
        with self._env.read() as txn:
            return [
                bytes(k).decode()
                for k in txn.cursor(db=self._env.tables["docs"]).iternext(values=False)
            ]

    def document_info(self, name: str) -> DocumentInfo:
        """Key count, update-log length and sizes of one document."""
        self._require_doc(name)
        with self._env.read() as txn:
            raw = txn.get(name.encode(), db=self._env.tables["docs"])
        meta = DocMeta.unpack(raw)
        return DocumentInfo(
            name=name,
            keys=meta.keys,
            log_entries=meta.log_n,
            log_bytes=meta.log_b,
            snapshot_bytes=meta.snap_b,
            value_bytes=meta.value_b,
        )

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
            out["compactions"] = self._writer.compactions
            out["collections"] = self._writer.collections
        return out

    # --- reads --------------------------------------------------------------------

    def get(self, doc: str, key: str) -> bytes | None:
        """The value of ``key`` in ``doc`` (a counter's total as 8 LE bytes), or None."""
        raw = self._tagged(doc, key)
        return None if raw is None else raw[1:]

    def get_counter(self, doc: str, key: str) -> int | None:
        """A counter's total, None if absent; a plain value raises WrongTypeError."""
        raw = self._tagged(doc, key)
        if raw is None:
            return None
        if raw[:1] != TAG_COUNTER:
            raise WrongTypeError(f"{doc}/{key} holds a plain value, not a counter")
        return unpack_i64(raw[1:])

    def lookup(self, doc: str, key: str) -> tuple[bytes | None, bool]:
        """``(value, is_counter)`` of ``key`` from one read (``get`` + its kind)."""
        raw = self._tagged(doc, key)
        if raw is None:
            return None, False
        return raw[1:], raw[:1] == TAG_COUNTER

    def _tagged(self, doc: str, key: str) -> bytes | None:
        # The hot read path (host kv_get / kv_incr call it): one LMDB lookup, no
        # context manager, nothing allocated needlessly.
        if doc not in self._known_docs or self._closed:
            self._require_doc(doc)
        try:
            raw_key = key.encode()
        except (AttributeError, UnicodeEncodeError):
            raw_key = b""
        if not raw_key or len(raw_key) > self.config.max_key_bytes or type(key) is not str:
            K.encode_key(key, self.config.max_key_bytes)  # raises, naming what is wrong
        try:
            txn = self._env.env.begin(db=self._kv)
        except lmdb.MapResizedError:
            with self._env.read() as read_txn:
                found: bytes | None = read_txn.get(self._prefixes[doc] + raw_key, db=self._kv)
            return found
        try:
            raw: bytes | None = txn.get(self._prefixes[doc] + raw_key)
        finally:
            txn.abort()
        return raw

    def scan(
        self, doc: str, prefix: str = "", cursor: str | None = None, limit: int = 100
    ) -> ScanPage:
        """Up to ``limit`` (key, value) pairs whose key starts with ``prefix``, in key order.

        Pass the returned page's ``cursor`` back to continue; it is None at the end.
        """
        self._require_doc(doc)
        if not isinstance(prefix, str):
            raise InvalidKeyError(f"scan prefix is a string, got {type(prefix).__name__}")
        if not 1 <= limit <= MAX_SCAN_LIMIT:
            raise StoreError(f"scan limit must be 1..{MAX_SCAN_LIMIT}, got {limit}")
        base = K.doc_prefix(doc)
        want = base + prefix.encode()
        start = want
        if cursor is not None:
            last = K.decode_cursor(cursor, doc, prefix)
            start = base + last.encode() + b"\x00"  # the smallest key after `last`
        items: list[tuple[str, bytes]] = []
        counters: list[str] = []
        more = False
        with self._env.read() as txn:
            cur = txn.cursor(db=self._kv)
            if cur.set_range(start):
                for key, value in cur:
                    if not bytes(key).startswith(want):
                        break
                    if len(items) == limit:
                        more = True
                        break
                    name = bytes(key)[len(base) :].decode()
                    items.append((name, bytes(value[1:])))
                    if value[:1] == TAG_COUNTER:
                        counters.append(name)
        next_cursor = K.encode_cursor(doc, prefix, items[-1][0]) if more else None
        return ScanPage(items, next_cursor, frozenset(counters))

    # --- writes -------------------------------------------------------------------

    def submit(self, ops: Sequence[WriteOp]) -> Future[list[int | None]]:
        """Queue an atomic batch; the future resolves once it is durable."""
        ops = list(ops)
        self._validate(ops)
        return self._submit(self._w().job_write(ops), weight=len(ops), docs=_docs_of(ops))

    def batch(self, ops: Sequence[WriteOp]) -> list[int | None]:
        """Apply ``ops`` atomically and durably; a counter's new total per ``Incr``."""
        return self.submit(ops).result()

    async def abatch(self, ops: Sequence[WriteOp]) -> list[int | None]:
        """Async form of :meth:`batch` (shares the group commit with other callers)."""
        ops = list(ops)
        self._validate(ops)
        return await self._w().submit_async(
            self._w().job_write(ops), weight=len(ops), docs=_docs_of(ops)
        )

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
        self, doc: str, update: bytes, *, origin: str | None = None, create: bool = False
    ) -> bool:
        """Integrate a remote Yjs v1 update durably; True if it changed local state.

        Idempotent and commutative. ``create`` makes the document if it is new.
        """
        return self._submit_apply(doc, update, origin, create).result()

    async def aapply_update(
        self, doc: str, update: bytes, *, origin: str | None = None, create: bool = False
    ) -> bool:
        """Async form of :meth:`apply_update`."""
        K.check_doc_name(doc)
        if not create:
            self._require_doc(doc)
        return await self._w().submit_async(
            self._w().job_apply(doc, update, origin, create), docs=(doc,)
        )

    def _submit_apply(
        self, doc: str, update: bytes, origin: str | None, create: bool
    ) -> Future[bool]:
        K.check_doc_name(doc)
        if not create:
            self._require_doc(doc)
        return self._submit(self._w().job_apply(doc, update, origin, create), docs=(doc,))

    def state_vector(self, doc: str) -> bytes:
        """The document's Yjs v1 state vector."""
        return self._read_crdt(doc, CrdtDocument.state_vector).result()

    async def astate_vector(self, doc: str) -> bytes:
        """Async form of :meth:`state_vector`."""
        self._require_doc(doc)
        return await self._w().submit_async(
            self._w().job_read(doc, CrdtDocument.state_vector), docs=(doc,)
        )

    def diff(self, doc: str, remote_state_vector: bytes | None = None) -> bytes:
        """A v1 update with what a peer at ``remote_state_vector`` lacks (None: all).

        Raises :class:`StaleReplicaError` for a replica holding part of history this
        store garbage-collected: it would integrate the rewritten items differently.
        """
        self._require_doc(doc)
        return self._submit(self._w().job_diff(doc, remote_state_vector), docs=(doc,)).result()

    async def adiff(self, doc: str, remote_state_vector: bytes | None = None) -> bytes:
        """Async form of :meth:`diff`."""
        self._require_doc(doc)
        return await self._w().submit_async(
            self._w().job_diff(doc, remote_state_vector), docs=(doc,)
        )

    def set_gc_frontier(self, doc: str, frontier: Mapping[int, int]) -> None:
        """Record a state vector (client -> clock) every replica of ``doc`` has reached.

        With ``GcMode.CLUSTER``, compaction collects overwritten entries covered by
        it. The caller vouches for it: the sync layer derives it from every cluster
        member's reports, one round behind, so no write still in flight builds on
        what is collected (see edgestate.sync.frontier).
        """
        self._require_doc(doc)
        vector = _state_vector(frontier)
        self._submit(self._w().job_gc_frontier(doc, vector), docs=()).result()

    async def aset_gc_frontier(self, doc: str, frontier: Mapping[int, int]) -> None:
        """Async form of :meth:`set_gc_frontier`."""
        self._require_doc(doc)
        await self._w().submit_async(self._w().job_gc_frontier(doc, _state_vector(frontier)))

    def get_local(self, name: str) -> bytes | None:
        """Node-local metadata saved under ``name`` (never replicated), or None."""
        self._check_open()
        with self._env.read() as txn:
            raw = txn.get(_LOCAL_PREFIX + name.encode(), db=self._env.tables["meta"])
        return bytes(raw) if raw is not None else None

    async def aput_local(self, name: str, data: bytes) -> None:
        """Durably save node-local metadata (the sync layer's member reports)."""
        key = _LOCAL_PREFIX + name.encode()

        def run(group: Any) -> None:
            group.txn.put(key, data, db=self._env.tables["meta"])
            group.dirty = True

        await self._w().submit_async(run)

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
        await self._w().submit_async(self._w().job_merge_gc(doc, ranges, rehung, dict(floor)))

    def gc_status(self, doc: str) -> GcStatus:
        """What garbage collection has done to ``doc``."""
        self._require_doc(doc)
        if self._writer is not None:
            state = self._writer.gc.get(doc)
        else:
            with self._env.read() as txn:
                raw = txn.get(K.gc_record_key(doc), db=self._env.tables["meta"])
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
        w = self._w()

        def run(group: Any) -> None:
            group.touched.add(doc)
            group.dirty = True
            w.compact(doc, group.txn)

        # A collection an automatic compaction started would make this one start
        # none (found under load: an older frontier, more garbage kept): let it
        # land first.
        self._settle_collection(doc)
        self._submit(run, docs=(doc,)).result()
        self._settle_collection(doc)

    def _settle_collection(self, doc: str) -> None:
        """Wait until no collection of ``doc`` is running or waiting to land."""
        while True:
            collector = self._w().collector(doc)
            if collector is not None:
                collector.join()  # its result is queued now
            # A job queued behind that result (or behind an install already under
            # way on the writer thread) completes only after it.
            self._submit(lambda group: None).result()
            if collector is None and self._w().collector(doc) is None:
                return  # (an automatic compaction may have started one meanwhile)

    # --- change subscription ------------------------------------------------------

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(ChangeEvent)`` on the writer thread after each durable commit.

        Keep it quick (hop to your own thread or loop). Returns an unsubscribe function.
        """
        return self._hub.subscribe(listener)

    def on_collected(self, listener: Callable[[str], None]) -> Callable[[], None]:
        """Call ``listener(doc)`` on the writer thread when a collection of ``doc``
        lands (the sync layer tells peers at once). Returns an unsubscribe function."""
        writer = self._w()
        writer.collected_listeners.append(listener)

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                writer.collected_listeners.remove(listener)

        return unsubscribe

    def changes(self, maxsize: int = 10_000) -> ChangeStream:
        """An async iterator of change events with a bounded buffer (see ChangeStream)."""
        return ChangeStream(self._hub, maxsize)

    # --- internals ----------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError("the store is closed")

    def _w(self) -> Writer:
        self._check_open()
        if self._writer is None:
            raise ReadOnlyStoreError(f"{self._env.path} was opened read-only")
        return self._writer

    def _submit(
        self, run: Callable[[Any], T], weight: int = 1, docs: tuple[str, ...] = ()
    ) -> Future[T]:
        return self._w().submit(run, weight, docs)

    def _require_doc(self, doc: str) -> None:
        if doc in self._known_docs:
            self._check_open()
            return
        K.check_doc_name(doc)
        if not self.has_document(doc):
            raise UnknownDocumentError(
                f"no document named {doc!r} in {self._env.path}; create it first"
            )

    def _read_crdt(self, doc: str, fn: Callable[[CrdtDocument], T]) -> Future[T]:
        self._require_doc(doc)
        return self._submit(self._w().job_read(doc, fn), docs=(doc,))

    def _validate(self, ops: list[WriteOp]) -> None:
        max_key = self.config.max_key_bytes
        for op in ops:
            if not isinstance(op, Set | Delete | Incr):
                raise StoreError(f"not a write operation: {op!r}")
            self._require_doc(op.doc)
            K.encode_key(op.key, max_key)
            if isinstance(op, Set):
                check_value(op, self.config)
            elif isinstance(op, Incr) and (
                not isinstance(op.delta, int) or isinstance(op.delta, bool)
            ):
                raise StoreError(f"increment must be an int, got {type(op.delta).__name__}")


# Node-local metadata lives in the meta table under this prefix.
_LOCAL_PREFIX = b"local\x00"


def _state_vector(value: Mapping[int, int]) -> dict[int, int]:
    """A copy of ``value`` if it is a state vector (client -> clock), else StoreError.

    Found in review: a frontier with a string clock was stored, and every later
    compaction of the document failed on it.
    """
    try:
        items = list(value.items())
    except AttributeError:
        raise StoreError(f"a frontier is a mapping client -> clock, got {value!r}") from None
    for client, clock in items:
        for part in (client, clock):
            if type(part) is not int or not 0 <= part < 1 << 64:
                raise StoreError(
                    f"a frontier maps client ids to clocks, non-negative integers; "
                    f"got {client!r}: {clock!r}"
                )
    return dict(items)


def _docs_of(ops: Sequence[WriteOp]) -> tuple[str, ...]:
    return tuple({op.doc: None for op in ops})
