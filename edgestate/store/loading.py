"""Rebuilding a document's CRDT, and loading big documents off the writer thread.

Rebuilding a CRDT costs ~9 us per key (9 s at 1M keys). Done inline, that would
stall every document's writes; so a job needing a big document that is not
loaded waits (with every later job on that document, to keep their order) while
a loader thread rebuilds it, and other jobs go on. Nothing writes the document
meanwhile, so the loader's read snapshot stays current.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from edgestate.errors import StoreError, UnknownDocumentError
from edgestate.store.crdt import CrdtDocument
from edgestate.store.group import resolve

if TYPE_CHECKING:
    from edgestate.store.group import Job, WriterState

log = logging.getLogger(__name__)


def read_doc(w: WriterState, name: str, txn: Any, *, threaded: bool) -> CrdtDocument:
    """``name``'s CRDT rebuilt from its snapshot and the log since."""
    meta = w.metas.get(name)
    if meta is None:
        raise UnknownDocumentError(f"no document named {name!r}; create it first")
    crdt = CrdtDocument(name, w.env.replica_id, threaded=threaded)
    snapshot = txn.get(name.encode(), db=w.env.tables.snap)
    updates = w.env.tables.log_since(txn, name, meta.snap_seq)
    crdt.load(bytes(snapshot) if snapshot is not None else None, updates)
    return crdt


@dataclass(slots=True)
class Loaded:
    """A background load finished (the loader thread queues this to the writer)."""

    name: str
    crdt: CrdtDocument | None
    error: BaseException | None


@dataclass(slots=True)
class _Loading:
    """A big document being loaded off the writer thread, and the jobs waiting on it."""

    thread: threading.Thread
    waiting: list[Job[Any]] = field(default_factory=list)


class Loader:
    """The background loads under way; used on the writer thread only."""

    def __init__(self, writer: WriterState, post: Callable[[Loaded], None]) -> None:
        self._w = writer
        self._post = post  # hands a finished load to the writer thread
        self._loading: dict[str, _Loading] = {}

    def __contains__(self, name: object) -> bool:  # a Container[str], as compaction asks
        return name in self._loading

    @property
    def busy(self) -> bool:
        """True while any load is under way (the writer waits for it to stop)."""
        return bool(self._loading)

    def park(self, job: Job[Any]) -> bool:
        """True if ``job`` must wait for a load (it is then kept until it is done)."""
        w = self._w
        for name in job.docs:
            loading = self._loading.get(name)
            if loading is None and name not in w.docs:
                meta = w.metas.get(name)
                if meta is not None and meta.keys > w.config.evict_max_keys:
                    loading = self._start(name)
            if loading is not None:
                loading.waiting.append(job)
                return True
        return False

    def _start(self, name: str) -> _Loading:
        w, post = self._w, self._post

        def load() -> None:
            try:
                with w.env.read() as txn:
                    crdt = read_doc(w, name, txn, threaded=True)
            except BaseException as exc:
                post(Loaded(name, None, exc))
            else:
                post(Loaded(name, crdt, None))

        thread = threading.Thread(target=load, name=f"edgestate-load-{name}", daemon=True)
        loading = self._loading[name] = _Loading(thread)
        thread.start()
        return loading

    def landed(self, done: Loaded) -> list[Job[Any]]:
        """Install a background-loaded document; return the jobs that waited on it."""
        loading = self._loading.pop(done.name)
        loading.thread.join()
        if done.crdt is not None:
            self._w.docs[done.name] = done.crdt
        else:
            log.error("loading %r failed: %r", done.name, done.error)
            error = StoreError(f"cannot load document {done.name!r}: {done.error}")
            resolve([(job, None, error) for job in loading.waiting])
            return []
        return loading.waiting
