"""The causal hold: remote updates that arrived before the updates they build on.

pycrdt would integrate parts of such an update out of order (measured: a map
entry without an origin shows up while the state vector does not move), so it
is held in the ``pending`` table (durably: it was acknowledged) until every one
of its blocks' gaps is filled, then applied and moved to the log.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from edgestate.errors import EdgestateError, InvalidUpdateError
from edgestate.store import keys as K
from edgestate.store.remote import apply_checked
from edgestate.store.updates import ready, update_blocks

if TYPE_CHECKING:
    from edgestate.store.crdt import CrdtDocument
    from edgestate.store.group import Group, WriterState

log = logging.getLogger(__name__)

# Out-of-order remote updates held per document until their gap is filled. Past
# this, anti-entropy is the cheaper repair than holding more.
MAX_PENDING = 10_000

# A held update: its pending-table key, its bytes, its (client, start clock) blocks.
Held = tuple[bytes, bytes, list[tuple[int, int]]]


class CausalHold:
    """The held updates of every document, read from the table on first use."""

    def __init__(self, writer: WriterState) -> None:
        self._w = writer
        self.pending: dict[str, list[Held]] = {}

    def of(self, group: Group, doc: str) -> list[Held]:
        """The updates of ``doc`` held now, oldest first."""
        pending = self.pending.get(doc)
        if pending is None:
            pending = []
            refused: list[bytes] = []
            table = self._w.env.tables
            for key, update in table.held(group.txn, doc):
                try:
                    blocks = update_blocks(update) or []
                except InvalidUpdateError as exc:
                    # Held before content refs were checked at the door.
                    log.warning(
                        "dropped a held update of %r: %s", doc, exc, extra={"fields": {"doc": doc}}
                    )
                    refused.append(key)
                    continue
                pending.append((key, update, blocks))
            for key in refused:
                group.txn.delete(key, db=table.pending)
                group.dirty = True
            self.pending[doc] = pending
        return pending

    def stash(self, group: Group, doc: str, update: bytes, blocks: list[tuple[int, int]]) -> None:
        """Hold ``update`` (whose ``blocks`` we cannot integrate yet)."""
        w = self._w
        pending = self.of(group, doc)
        table = w.env.tables.pending
        if len(pending) >= MAX_PENDING:
            # Bounded: the oldest gap is given up; anti-entropy (a state-vector
            # diff) brings those changes again in causal order.
            old_key = pending.pop(0)[0]
            group.txn.delete(old_key, db=table)
            log.warning(
                "pending updates of %r over %d; dropped the oldest",
                doc,
                MAX_PENDING,
                extra={"fields": {"doc": doc}},
            )
        meta = w.metas[doc]
        key = K.log_key(doc, meta.seq)
        meta.seq += 1
        w.dirty_metas.add(doc)
        group.dirty = True
        group.txn.put(key, update, db=table)
        pending.append((key, update, blocks))

    def drain(self, group: Group, doc: str, crdt: CrdtDocument, origin: str | None) -> None:
        """Apply every held update of ``doc`` whose gap is filled now, until none
        is; one that is refused is dropped."""
        pending = self.pending[doc]
        table = self._w.env.tables.pending
        progress = True
        while progress and pending:
            progress = False
            for entry in list(pending):
                key, update, blocks = entry
                if not ready(crdt, blocks):
                    continue
                pending.remove(entry)
                group.txn.delete(key, db=table)
                try:
                    added, changed = apply_checked(self._w, crdt, update)
                except EdgestateError as exc:
                    log.warning(
                        "dropped a pending update of %r: %s",
                        doc,
                        exc,
                        extra={"fields": {"doc": doc}},
                    )
                    if doc not in self._w.docs:
                        return  # the CRDT was dropped; the rest waits for the next apply
                    continue
                group.persist(doc, added, crdt.materialized(changed), origin)
                progress = True

    def forget(self, doc: str) -> None:
        """Drop what is cached of ``doc`` (a failed commit: reread from the table)."""
        self.pending.pop(doc, None)
