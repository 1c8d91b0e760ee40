"""What the writer's helpers share with it: the jobs, one group commit's state,
and the narrow view of the writer they work on.

The writer (:mod:`edgestate.store.writer`) imports its helpers (the job bodies,
the causal hold, compaction, loading); none of them imports the writer. They
reach its bookkeeping through :class:`WriterState`, which names exactly what
they use, and the writer satisfies it structurally. Everything here runs on the
writer thread, except where a docstring says otherwise.

Nothing here imports pycrdt or asyncio at run time: the job bodies import this
module's types, and a read-only store never loads either.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from edgestate.store import keys as K
from edgestate.store.types import ChangeEvent

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Callable

    from edgestate.store.changes import ChangeHub
    from edgestate.store.crdt import CrdtDocument, WritePlan
    from edgestate.store.env import DocMeta, Environment
    from edgestate.store.gc import GcState
    from edgestate.store.types import StoreConfig

log = logging.getLogger(__name__)

T = TypeVar("T")


class Holding(Protocol):
    """What a job asks of the causal hold (:class:`~edgestate.store.hold.CausalHold`)."""

    def of(self, group: Group, doc: str) -> Sequence[object]: ...

    def stash(
        self, group: Group, doc: str, update: bytes, blocks: list[tuple[int, int]]
    ) -> None: ...

    def drain(self, group: Group, doc: str, crdt: CrdtDocument, origin: str | None) -> None: ...


class Compacting(Protocol):
    """What a job asks of compaction (:class:`~edgestate.store.compaction.Compactor`)."""

    def compact(self, name: str, txn: Any | None = None) -> None: ...


class WriterState(Protocol):
    """The writer's state its helpers use, and nothing else of it.

    The writer owns every live CRDT (``docs``) and the bookkeeping (``metas``,
    ``dirty_metas``, ``gc``); only its thread touches them (a loader thread
    reads ``metas`` and ``env`` of a document no job writes meanwhile).
    """

    env: Environment
    config: StoreConfig
    hub: ChangeHub
    docs: dict[str, CrdtDocument]
    metas: dict[str, DocMeta]
    dirty_metas: set[str]
    gc: dict[str, GcState]

    # Read-only, so the writer's concrete helpers satisfy the narrow protocols.
    @property
    def hold(self) -> Holding: ...

    @property
    def compactor(self) -> Compacting: ...

    def load_doc(self, name: str, txn: Any) -> CrdtDocument:
        """The cached CRDT of ``name``, or rebuilt from snapshot + log."""
        ...


@dataclass(slots=True)
class Job(Generic[T]):
    """One unit of work. Sync callers wait on ``future``; asyncio callers on
    ``afut``, settled on their ``loop`` in one hop per group (a thread-safe wakeup
    costs ~30 us, too much to pay once per write at high concurrency)."""

    run: Callable[[Group], T]
    weight: int
    # Only a sync caller's: a concurrent Future builds a Condition and an RLock,
    # ~4 us an asyncio caller would pay for nothing on every write.
    future: Future[T] | None = None
    loop: asyncio.AbstractEventLoop | None = None
    afut: asyncio.Future[T] | None = None
    docs: tuple[str, ...] = ()  # documents whose CRDT the job needs

    def start(self) -> bool:
        if self.afut is not None:
            return not self.afut.cancelled()
        assert self.future is not None
        return self.future.set_running_or_notify_cancel()


def resolve(outcomes: Sequence[tuple[Job[Any], Any, BaseException | None]]) -> None:
    """Settle each job with its result or error (asyncio ones in one hop per loop)."""
    by_loop: dict[asyncio.AbstractEventLoop, list[Any]] = {}
    for job, result, error in outcomes:
        if job.afut is not None and job.loop is not None:
            by_loop.setdefault(job.loop, []).append((job.afut, result, error))
        elif job.future is None or job.future.done():
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


def _settle(items: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    for afut, result, error in items:
        if afut.done():
            continue  # cancelled by its caller meanwhile
        if error is None:
            afut.set_result(result)
        else:
            afut.set_exception(error)


class Group:
    """What the jobs of one group commit share: the transaction and pending output."""

    def __init__(self, writer: WriterState, txn: Any) -> None:
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
        self,
        name: str,
        update: bytes | None,
        values: dict[str, bytes | None],
        origin: str | None,
        announced: bool = False,
    ) -> None:
        """Append ``update`` to the log and store the materialized ``values``."""
        if update is None:
            return
        w = self.writer
        meta = w.metas[name]
        txn = self.txn
        txn.put(K.log_key(name, meta.seq), update, db=w.env.tables.log)
        meta.seq += 1
        meta.log_n += 1
        meta.log_b += len(update)
        kv = w.env.tables.kv
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
            self.events.append(ChangeEvent(name, frozenset(values), update, origin, announced))
