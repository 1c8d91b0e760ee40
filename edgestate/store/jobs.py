"""The store's operations as writer jobs: one builder per operation.

``Store`` builds the :class:`Work` of an operation once and hands it to either
``Writer.submit`` (the blocking methods) or ``Writer.submit_async`` (the
``a``-prefixed ones). The bodies run on the writer thread, inside a group's
transaction (:class:`edgestate.store.group.Group`), and reach the writer's state
through it, as the narrow :class:`edgestate.store.group.WriterState`. A body
that raises an ``EdgestateError`` has written nothing (see the writer's
invariant).

Nothing here imports pycrdt or asyncio: a read-only store never loads them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from edgestate.errors import (
    EdgestateError,
    InvalidUpdateError,
    StaleReplicaError,
    UnknownDocumentError,
)
from edgestate.store import keys as K
from edgestate.store.codec import check_v1_update, decode_state_vector
from edgestate.store.env import DocMeta
from edgestate.store.gc import GcRecord, GcState, Ranges
from edgestate.store.gc_rule import partial_replica
from edgestate.store.remote import apply_checked, blocks_of_collected
from edgestate.store.updates import end_clocks, ready, update_blocks

if TYPE_CHECKING:
    from edgestate.store.announce import Walked
    from edgestate.store.group import Group
    from edgestate.store.types import WriteOp

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Work(Generic[T]):
    """A job for the writer: its body, how many ops it counts for in a group, and
    the documents whose CRDT it needs (a big one not loaded yet is loaded first,
    off the writer thread)."""

    run: Callable[[Group], T]
    weight: int = 1
    docs: tuple[str, ...] = ()


def write(ops: Sequence[WriteOp]) -> Work[list[int | None]]:
    """Add ``ops`` to the group's write plans, all or nothing.

    Values were validated by the caller; type and overflow checks happen here
    against the simulated state, before anything is mutated.
    """

    def run(group: Group) -> list[int | None]:
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

    return Work(run, len(ops), tuple({op.doc: None for op in ops}))


def refused(error: EdgestateError) -> Work[Any]:
    """A job that fails with ``error`` and writes nothing (a batch refused before
    the writer, answered in order with the batches queued beside it)."""

    def run(group: Group) -> Any:
        raise error

    return Work(run, 0)


def apply(
    doc: str,
    update: bytes,
    origin: str | None,
    create: bool,
    record: GcRecord | None = None,
    walked: Walked | None = None,
) -> Work[bool]:
    """Integrate a remote update; True if it changed anything.

    ``record``, the collection record of the history the update carries (a
    collector's diff), is merged in the same transaction, *after* the update: the
    update is checked against what this store had collected before, never
    against the record that describes it (its re-hung items hang exactly where
    the record says). A refused update merges nothing. ``walked``: the update was
    announced, and this is its walk (:mod:`edgestate.store.announce`); its event
    says ``announced``.
    """

    def run(group: Group) -> bool:
        changed = _apply(group, doc, update, origin, create, walked)
        if record is not None:
            _merge_record(group, doc, record)
        return changed

    return Work(run, docs=(doc,))


def _apply(
    group: Group, doc: str, update: bytes, origin: str | None, create: bool, walked: Walked | None
) -> bool:
    w = group.writer
    update_b = bytes(update)
    check_v1_update(update_b)
    state = w.gc.get(doc)
    if state is not None and state.ranges.by_client:
        # One parse serves both: the content check and the stale check.
        blocks = blocks_of_collected(group.doc(doc), update_b, state)
        stale_checked = True
        ends: list[tuple[int, int]] | None = None
    elif walked is not None:
        # Walked when it was announced; no collection since (the branch above).
        blocks, ends = walked.blocks, walked.ends
        stale_checked = False
    else:
        block_ends: list[int] = []
        blocks = update_blocks(update_b, block_ends)
        stale_checked = False
        # Saves walking the update again to keep the clocks (see CrdtDocument.clocks).
        ends = None if blocks is None else end_clocks(blocks, block_ends)
    created = create and doc not in w.metas
    if created:
        _create(group, doc)
    crdt = group.doc(doc)
    if blocks is not None and not ready(crdt, blocks):
        # It builds on updates we have not seen. pycrdt would integrate
        # parts of it out of order (measured: a map entry without an origin
        # shows up while the state vector does not move), so hold it
        # until every block's gap is filled.
        w.hold.stash(group, doc, update_b, blocks)
        return False
    try:
        added, changed = apply_checked(w, crdt, update_b, stale_checked, ends)
    except EdgestateError:
        if created:  # a refused update must not leave an empty document behind
            del w.metas[doc]
            w.docs.pop(doc, None)
            w.dirty_metas.discard(doc)
        raise
    group.persist(doc, added, crdt.materialized(changed), origin, walked is not None)
    if added is not None and w.hold.of(group, doc):
        w.hold.drain(group, doc, crdt, origin)
    return added is not None


def create(doc: str) -> Work[bool]:
    """Create an empty document; False if it already existed."""

    def run(group: Group) -> bool:
        if doc in group.writer.metas:
            return False
        _create(group, doc)
        return True

    return Work(run)


def _create(group: Group, doc: str) -> None:
    w = group.writer
    w.metas[doc] = DocMeta(created_ms=int(time.time() * 1000))
    w.dirty_metas.add(doc)
    group.dirty = True


def state_vector(doc: str) -> Work[bytes]:
    """Read the live CRDT's state vector."""

    def run(group: Group) -> bytes:
        return group.doc(doc).state_vector()

    return Work(run, docs=(doc,))


def diff(doc: str, remote: bytes | None) -> Work[bytes]:
    """Compute what a replica at ``remote`` lacks, refusing a stale one."""

    def run(group: Group) -> bytes:
        return _diff(group, doc, remote)

    return Work(run, docs=(doc,))


def diff_with_record(doc: str, remote: bytes | None) -> Work[tuple[bytes, GcRecord | None]]:
    """:func:`diff` and the collection record of the history it carries, read in
    one job so the record describes exactly that history."""

    def run(group: Group) -> tuple[bytes, GcRecord | None]:
        update = _diff(group, doc, remote)
        state = group.writer.gc.get(doc)
        return update, state.record() if state is not None else None

    return Work(run, docs=(doc,))


def _diff(group: Group, doc: str, remote: bytes | None) -> bytes:
    crdt = group.doc(doc)
    state = group.writer.gc.get(doc)
    if remote is not None and state is not None and state.ranges.by_client:
        try:
            theirs = decode_state_vector(remote)
        except (ValueError, IndexError) as exc:
            raise InvalidUpdateError(f"cannot decode state vector: {exc}") from exc
        why = partial_replica(theirs, state.floor)
        if why is not None:
            raise StaleReplicaError(f"cannot sync {doc!r} with this replica: {why}")
    return crdt.diff(remote)


def gc_frontier(doc: str, frontier: dict[int, int]) -> Work[None]:
    """Record the cluster's stable frontier of ``doc``."""

    def run(group: Group) -> None:
        w = group.writer
        if doc not in w.metas:
            raise UnknownDocumentError(f"no document named {doc!r}")
        state = replace(w.gc.get(doc) or GcState(), frontier=dict(frontier))
        group.txn.put(K.gc_record_key(doc), state.pack(), db=w.env.tables.meta)
        group.dirty = True
        # Installed now: on a failed commit the next call brings it again.
        w.gc[doc] = state

    return Work(run)


def merge_gc(doc: str, ranges: Ranges, rehung: Ranges, floor: dict[int, int]) -> Work[None]:
    """Fold another node's collection record into ours.

    A node that bootstrapped from a collected copy holds that history without
    having collected it, and one that kept the full history would take (and
    relay) a stale write the collector refuses, which would then refuse that
    member's every later update (found in review). Knowing the collector's
    ranges, both refuse the same writes.
    """

    def run(group: Group) -> None:
        if doc in group.writer.metas:
            _merge_record(group, doc, GcRecord(ranges, rehung, floor))
        # else nothing of it here yet; a later diff brings it, with its record

    return Work(run)


def _merge_record(group: Group, doc: str, record: GcRecord) -> None:
    w = group.writer
    old = w.gc.get(doc) or GcState()
    state = old.merged(record)
    if state == old:
        return
    group.txn.put(K.gc_record_key(doc), state.pack(), db=w.env.tables.meta)
    group.dirty = True
    # Installed now, as gc_frontier does: should the commit fail, the record is
    # in memory only (refusing a little early is harmless) and the sender's next
    # diff brings it again.
    w.gc[doc] = state


def put_local(key: bytes, data: bytes) -> Work[None]:
    """Store node-local metadata under ``key`` of the meta table."""

    def run(group: Group) -> None:
        group.txn.put(key, data, db=group.writer.env.tables.meta)
        group.dirty = True

    return Work(run)


def compact(doc: str) -> Work[None]:
    """Fold ``doc``'s log into a snapshot now, in the group's transaction."""

    def run(group: Group) -> None:
        group.touched.add(doc)
        group.dirty = True
        group.writer.compactor.compact(doc, group.txn)

    return Work(run, docs=(doc,))


def barrier() -> Work[None]:
    """Nothing: it completes once everything queued before it has."""
    return Work(_nothing)


def _nothing(group: Group) -> None:
    return None
