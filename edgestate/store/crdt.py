"""One document's live CRDT: a pycrdt ``Doc`` with two root maps.

Only the store's writer thread touches these objects. Reads never do: they hit
the materialized table, which this module computes for the keys a transaction
changed.

Value model (what a Yjs client sees):

- ``getMap("root")``: plain values, key -> bytes (last writer wins).
- ``getMap("counters")``: convergent counters, flattened as
  ``key + "\\x00" + replica`` -> that replica's running total (8 little-endian
  signed bytes). Every entry has a single writer, so concurrent increments on
  different replicas all count; a counter's value is the sum of its entries.
  Counters are not nested maps under "root": two replicas creating the same nested
  map concurrently would each create their own, and last-writer-wins would keep one
  and drop the other's increments. Root-level maps are merged by name instead.

A key holds a plain value if "root" has it, else a counter if it has slots. Set and
Delete clear the key's counter slots; a Set concurrent with an increment elsewhere
resolves to the plain value on every replica. Values other Yjs clients may put in
"root" are materialized too: a string as its UTF-8, anything else as JSON.
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
from edgestate.store.updates import decode_state_vector

ROOT = "root"
COUNTERS = "counters"
SLOT_SEP = "\x00"

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


def pack_i64(value: int) -> bytes:
    """8 little-endian bytes of a signed 64-bit integer."""
    return _I64.pack(value)


def unpack_i64(raw: bytes) -> int:
    """Inverse of :func:`pack_i64`."""
    return int(_I64.unpack(raw)[0])


def materialize_plain(value: object) -> bytes:
    """Tagged bytes stored in the materialized table for a plain CRDT value."""
    if isinstance(value, bytes | bytearray):
        return TAG_BYTES + bytes(value)
    if isinstance(value, str):
        return TAG_BYTES + value.encode()
    if isinstance(value, Map):
        value = value.to_py()
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
        self.counters: Map[Any] = self.doc.get(COUNTERS, type=Map)
        self.replica = str(client_id)
        self.last_used = time.monotonic()
        # key -> {replica: running total}: an index over "counters" so a counter's
        # total costs O(replicas), not a walk of every counter in the document.
        self._slots: dict[str, dict[str, int]] = {}
        self._updates: list[bytes] = []
        self._changed: set[str] = set()
        # All observers are constant cost per transaction: the update bytes come
        # from the transaction itself, never from diffing the whole document.
        self._doc_sub = self.doc.observe(self._on_transaction)
        self._root_sub = self.root.observe(self._on_root)
        self._counter_sub = self.counters.observe(self._on_counters)

    def _on_transaction(self, event: TransactionEvent) -> None:
        self._updates.append(event.update)

    def _on_root(self, event: Any) -> None:
        self._changed.update(event.keys)

    def _on_counters(self, event: Any) -> None:
        for flat, change in event.keys.items():
            key, sep, replica = flat.rpartition(SLOT_SEP)
            if not sep:
                continue  # not a slot we understand; it never counts
            self._changed.add(key)
            if change["action"] == "delete":
                slots = self._slots.get(key)
                if slots is not None:
                    slots.pop(replica, None)
                    if not slots:
                        del self._slots[key]
            else:
                self._slots.setdefault(key, {})[replica] = _slot_value(change["newValue"])

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

    def _kind(self, key: str) -> str:
        if key in self.root:
            return "bytes"
        return "counter" if self._slots.get(key) else "absent"

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
                kind = pending.get(op.key) or self._kind(op.key)
                if kind == "bytes":
                    raise WrongTypeError(
                        f"{self.name}/{op.key} holds a plain value, not a counter; "
                        "delete it or set it before incrementing"
                    )
                if not (I64_MIN <= op.delta <= I64_MAX):
                    raise ValueTooLargeError(f"increment {op.delta} does not fit in int64")
                pending[op.key] = "counter"

    def apply_local(
        self, ops: Sequence[WriteOp]
    ) -> tuple[list[int | None], bytes | None, set[str]]:
        """Run ``ops`` in one CRDT transaction (already checked by :meth:`check_ops`).

        Returns each op's result (a counter's new total for ``Incr``), the update
        the transaction produced and the keys it changed.
        """
        results: list[int | None] = []
        self.last_used = time.monotonic()
        with self.doc.transaction():
            for op in ops:
                if isinstance(op, Incr):
                    results.append(self._incr(op))
                    continue
                if isinstance(op, Set):
                    self.root[op.key] = op.value if type(op.value) is bytes else bytes(op.value)
                elif op.key in self.root:
                    del self.root[op.key]
                for replica in self._current_slots(op.key):
                    del self.counters[op.key + SLOT_SEP + replica]
                results.append(None)
        update, changed = self._take()
        return results, update, changed

    def _current_slots(self, key: str) -> dict[str, int]:
        # Read through the open transaction (the index is only updated by the
        # observers when it ends), so earlier ops of the same batch count.
        out: dict[str, int] = {}
        for replica in {*self._slots.get(key, ()), self.replica}:
            raw = self.counters.get(key + SLOT_SEP + replica)
            if raw is not None:
                out[replica] = _slot_value(raw)
        return out

    def _incr(self, op: Incr) -> int:
        slots = self._current_slots(op.key)
        mine = slots.get(self.replica, 0) + op.delta
        total = sum(slots.values()) + op.delta
        # Checked before touching the CRDT so a refused increment leaves no trace.
        if not (I64_MIN <= mine <= I64_MAX and I64_MIN <= total <= I64_MAX):
            raise ValueTooLargeError(f"counter {self.name}/{op.key} would overflow int64")
        self.counters[op.key + SLOT_SEP + self.replica] = pack_i64(mine)
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
        plain = self.root.get(key)
        if plain is not None:
            return materialize_plain(plain)
        slots = self._slots.get(key)
        if slots:
            return TAG_COUNTER + pack_i64(sum(slots.values()))
        return None

    def clock(self, client: int) -> int:
        """Next clock this document expects from ``client`` (0 if never seen)."""
        return decode_state_vector(self.doc.get_state()).get(client, 0)

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
