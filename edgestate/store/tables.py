"""Typed access to the environment's LMDB sub-databases (their key layout is in
:mod:`edgestate.store.keys`), and the one prefix walk every reader of the update
log, the held updates and the GC records uses."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, fields
from typing import Any

from edgestate.store import keys as K


def prefixed(
    txn: Any, db: Any, prefix: bytes, start: bytes | None = None
) -> Iterator[tuple[bytes, Any]]:
    """(key, value) of every row of ``db`` whose key starts with ``prefix``, in key
    order, from ``start`` (default: the first such row). Values are LMDB's."""
    cursor = txn.cursor(db=db)
    if not cursor.set_range(prefix if start is None else start):
        return
    for raw, value in cursor:
        key = bytes(raw)
        if not key.startswith(prefix):
            return
        yield key, value


@dataclass(frozen=True, slots=True)
class Tables:
    """The named sub-databases of one environment."""

    meta: Any  # format, replica id, GC records, node-local metadata
    docs: Any  # document name -> DocMeta
    kv: Any  # doc NUL key -> tag byte + materialized value
    log: Any  # doc NUL seq -> one v1 update
    snap: Any  # document name -> its snapshot (a v1 update)
    pending: Any  # doc NUL seq -> a remote update held until its gap is filled

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The sub-database names, as stored in LMDB's main database."""
        return tuple(f.name for f in fields(cls))

    @classmethod
    def open(cls, env: Any, txn: Any = None, *, create: bool) -> Tables:
        """Open every table of ``env`` (inside ``txn`` when creating them)."""
        return cls(*(env.open_db(n.encode(), txn=txn, create=create) for n in cls.names()))

    def log_since(self, txn: Any, doc: str, seq: int) -> list[bytes]:
        """``doc``'s logged updates from sequence number ``seq`` on, in commit order."""
        start = K.log_key(doc, seq)
        return [bytes(value) for _, value in prefixed(txn, self.log, K.doc_prefix(doc), start)]

    def drop_log(self, txn: Any, doc: str, since: int, until: int) -> None:
        """Delete ``doc``'s log entries ``since`` <= seq < ``until``."""
        cursor = txn.cursor(db=self.log)
        end = K.log_key(doc, until)
        if cursor.set_range(K.log_key(doc, since)):
            while bytes(cursor.key()) < end:
                if not cursor.delete():
                    break

    def held(self, txn: Any, doc: str) -> list[tuple[bytes, bytes]]:
        """(key, update) of every update of ``doc`` held in the pending table."""
        return [
            (key, bytes(value)) for key, value in prefixed(txn, self.pending, K.doc_prefix(doc))
        ]

    def gc_records(self, txn: Any) -> Iterator[tuple[str, bytes]]:
        """(document, packed GcState) of every GC record in the meta table."""
        for key, value in prefixed(txn, self.meta, K.GC_RECORD_PREFIX):
            yield key[len(K.GC_RECORD_PREFIX) :].decode(), bytes(value)
