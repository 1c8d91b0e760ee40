"""One document's live CRDT (a pycrdt ``Doc`` whose root map holds the keys).

Only the store's writer thread touches these objects. Reads never do: they hit
the materialized table, which this module computes for the keys a transaction
changed.

Value model inside the root map (what a Yjs client sees under ``getMap("root")``):

- bytes: a plain value (last writer wins);
- a nested map: a convergent counter, one slot per replica (the replica's own
  running total as 8 little-endian signed bytes). Each slot has a single writer,
  so concurrent increments on different replicas all count; the total is the sum.

Values that other Yjs clients may put there are materialized too: a string as its
UTF-8 bytes, anything else as JSON, so a read never fails on foreign data.
"""

from __future__ import annotations

import json
import struct
import time
from collections.abc import Iterable, Sequence
from typing import Any

from pycrdt import Doc, Map, TransactionEvent, merge_updates

from edgestate.errors import InvalidUpdateError, ValueTooLargeError, WrongTypeError
from edgestate.store.types import Delete, Incr, Set, WriteOp

ROOT = "root"

TAG_BYTES = b"b"
TAG_COUNTER = b"c"
TAG_JSON = b"j"

_I64 = struct.Struct("<q")
I64_MIN = -(1 << 63)
I64_MAX = (1 << 63) - 1


def _slot_value(raw: object) -> int:
    if isinstance(raw, bytes | bytearray) and len(raw) == 8:
        return int(_I64.unpack(raw)[0])
    return 0  # a slot some foreign client wrote in another shape does not count


def counter_total(value: Map[Any]) -> int:
    """Sum of every replica's slot of a counter map."""
    return sum(_slot_value(v) for v in value.values())


def pack_i64(value: int) -> bytes:
    """8 little-endian bytes of a signed 64-bit integer."""
    return _I64.pack(value)


def unpack_i64(raw: bytes) -> int:
    """Inverse of :func:`pack_i64`."""
    return int(_I64.unpack(raw)[0])


def materialize(value: object) -> bytes | None:
    """Tagged bytes stored in the materialized table for one CRDT value."""
    if value is None:
        return None
    if isinstance(value, bytes | bytearray):
        return TAG_BYTES + bytes(value)
    if isinstance(value, Map):
        return TAG_COUNTER + pack_i64(counter_total(value))
    if isinstance(value, str):
        return TAG_BYTES + value.encode()
    try:
        return TAG_JSON + json.dumps(value, default=str).encode()
    except (TypeError, ValueError):
        return TAG_JSON + b"null"


class CrdtDocument:
    """A document's CRDT plus the bookkeeping to persist what each transaction did."""

    def __init__(self, name: str, client_id: int) -> None:
        self.name = name
        self.doc: Doc[Any] = Doc(client_id=client_id)
        self.root: Map[Any] = self.doc.get(ROOT, type=Map)
        self.slot = str(client_id)
        self.last_used = time.monotonic()
        self._updates: list[bytes] = []
        self._changed: set[str] = set()
        # Both observers are constant cost per transaction: the update bytes come
        # from the transaction itself, never from diffing the whole document.
        self._doc_sub = self.doc.observe(self._on_transaction)
        self._map_sub = self.root.observe_deep(self._on_map_events)

    def _on_transaction(self, event: TransactionEvent) -> None:
        self._updates.append(event.update)

    def _on_map_events(self, events: list[Any]) -> None:
        for event in events:
            path = event.path
            if path:
                self._changed.add(str(path[0]))  # a counter slot changed under this key
            else:
                self._changed.update(event.keys)

    def _take(self) -> tuple[bytes | None, set[str]]:
        updates, changed = self._updates, self._changed
        self._updates, self._changed = [], set()
        if not updates:
            return None, changed
        if len(updates) == 1:
            return updates[0], changed
        return merge_updates(*updates), changed

    def load(self, snapshot: bytes | None, log: Iterable[bytes]) -> None:
        """Rebuild the CRDT from its snapshot and update log (nothing is captured)."""
        with self.doc.transaction():
            if snapshot:
                self.doc.apply_update(snapshot)
            for update in log:
                self.doc.apply_update(update)
        self._take()

    def check_ops(self, ops: Sequence[WriteOp], pending: dict[str, str]) -> None:
        """Raise before any mutation if an op does not fit the value's type.

        ``pending`` maps keys already touched by earlier ops of the same batch to
        the kind they will hold ("bytes", "counter" or "absent").
        """
        for op in ops:
            if isinstance(op, Set):
                pending[op.key] = "bytes"
            elif isinstance(op, Delete):
                pending[op.key] = "absent"
            else:
                kind = pending.get(op.key)
                if kind is None:
                    current = self.root.get(op.key)
                    kind = "absent" if current is None else (
                        "counter" if isinstance(current, Map) else "bytes"
                    )
                if kind == "bytes":
                    raise WrongTypeError(
                        f"{self.name}/{op.key} holds a plain value, not a counter; "
                        "delete it or set it before incrementing"
                    )
                if not (I64_MIN <= op.delta <= I64_MAX):
                    raise ValueTooLargeError(f"increment {op.delta} does not fit in int64")
                pending[op.key] = "counter"

    def apply_local(self, ops: Sequence[WriteOp]) -> tuple[list[int | None], bytes | None, set[str]]:
        """Run ``ops`` in one CRDT transaction (already checked by :meth:`check_ops`).

        Returns each op's result (a counter's new total for ``Incr``), the update
        the transaction produced and the keys it changed.
        """
        results: list[int | None] = []
        self.last_used = time.monotonic()
        with self.doc.transaction():
            for op in ops:
                if isinstance(op, Set):
                    self.root[op.key] = op.value if type(op.value) is bytes else bytes(op.value)
                    results.append(None)
                elif isinstance(op, Delete):
                    if op.key in self.root:
                        del self.root[op.key]
                    results.append(None)
                else:
                    results.append(self._incr(op))
        update, changed = self._take()
        return results, update, changed

    def _incr(self, op: Incr) -> int:
        counter = self.root.get(op.key)
        if isinstance(counter, Map):
            mine = _slot_value(counter.get(self.slot)) + op.delta
            total = counter_total(counter) + op.delta
        else:
            mine = total = op.delta
        # Checked before touching the CRDT so a refused increment leaves no trace.
        if not (I64_MIN <= mine <= I64_MAX and I64_MIN <= total <= I64_MAX):
            raise ValueTooLargeError(f"counter {self.name}/{op.key} would overflow int64")
        if not isinstance(counter, Map):
            self.root[op.key] = Map()
            counter = self.root[op.key]
        counter[self.slot] = pack_i64(mine)
        return total

    def apply_remote(self, update: bytes) -> tuple[bytes | None, set[str]]:
        """Integrate a remote v1 update; returns what it added (None if nothing)."""
        self.last_used = time.monotonic()
        try:
            self.doc.apply_update(update)
        except ValueError as exc:
            self._take()
            raise InvalidUpdateError(f"cannot decode update for {self.name!r}: {exc}") from exc
        return self._take()

    def value(self, key: str) -> bytes | None:
        """Materialized (tagged) value of ``key`` as the CRDT holds it now."""
        return materialize(self.root.get(key))

    def state_vector(self) -> bytes:
        """The document's Yjs v1 state vector."""
        return bytes(self.doc.get_state())

    def diff(self, remote_state_vector: bytes | None) -> bytes:
        """A v1 update with everything the holder of ``remote_state_vector`` lacks."""
        if remote_state_vector is None:
            return bytes(self.doc.get_update())
        try:
            return bytes(self.doc.get_update(remote_state_vector))
        except ValueError as exc:
            raise InvalidUpdateError(f"cannot decode state vector: {exc}") from exc

    def snapshot(self) -> bytes:
        """The whole state as one v1 update (compaction writes this)."""
        return bytes(self.doc.get_update())
