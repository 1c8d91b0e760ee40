"""One invocation's view of the store: document grants, handles and a write overlay.

An invocation never writes to the store directly. Its writes collect in an
:class:`Overlay` that later reads of the same invocation see (read-your-own-
writes); only when the entry returns success does the runtime submit
:meth:`Overlay.ops` as one atomic batch. A failed invocation drops the overlay,
so nothing it wrote becomes visible.

Invocations are atomic but not isolated: two concurrent invocations read the
committed state as it was when each ran. Counters stay correct under that (their
increments commute); plain values are last-writer-wins, as everywhere in the
store.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from edgestate.errors import WrongTypeError
from edgestate.store import Delete, Incr, Set, Store, WriteOp

I64_MIN = -(1 << 63)
I64_MAX = (1 << 63) - 1


class Kind(Enum):
    """What an overlay entry leaves a key holding."""

    SET = "set"  # plain bytes
    DELETED = "deleted"
    INCR = "incr"  # committed counter (or none) plus ``delta``
    RESET_INCR = "reset_incr"  # deleted here, then counted from zero


@dataclass(slots=True)
class Pending:
    """The net effect of one invocation's writes to one key."""

    kind: Kind
    value: bytes = b""
    delta: int = 0
    base: int = 0  # committed counter total seen at the first increment


class Grants:
    """The documents a manifest lets a module read and write (write implies read)."""

    __slots__ = ("read", "write")

    def __init__(self, read: frozenset[str], write: frozenset[str]) -> None:
        self.write = write
        self.read = read | write

    def may_open(self, doc: str) -> bool:
        """True if ``doc`` is granted at all."""
        return doc in self.read


class Overlay:
    """Pending writes of one invocation, keyed by (document, key)."""

    __slots__ = ("_entries", "bytes_pending", "max_bytes", "max_keys", "store")

    def __init__(self, store: Store, *, max_keys: int, max_bytes: int) -> None:
        self.store = store
        self.max_keys = max_keys
        self.max_bytes = max_bytes
        self.bytes_pending = 0
        self._entries: dict[tuple[str, str], Pending] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def _room_for(self, doc: str, key: str, extra: int) -> bool:
        if (doc, key) not in self._entries and len(self._entries) >= self.max_keys:
            return False
        return self.bytes_pending + extra <= self.max_bytes

    def get(self, doc: str, key: str) -> bytes | None:
        """The value as this invocation sees it."""
        entry = self._entries.get((doc, key))
        if entry is None:
            return self.store.get(doc, key)
        return self._staged(entry)

    def get_stored(self, doc: str, key: str) -> tuple[bytes, int] | None:
        """:meth:`get` as ``(buffer, start)`` (see ``Store.get_stored``)."""
        entry = self._entries.get((doc, key))
        if entry is None:
            return self.store.get_stored(doc, key)
        value = self._staged(entry)
        return None if value is None else (value, 0)

    @staticmethod
    def _staged(entry: Pending) -> bytes | None:
        if entry.kind is Kind.SET:
            return entry.value
        if entry.kind is Kind.DELETED:
            return None
        total = entry.base + entry.delta if entry.kind is Kind.INCR else entry.delta
        return total.to_bytes(8, "little", signed=True)

    def set(self, doc: str, key: str, value: bytes) -> bool:
        """Stage a write; False if it would pass the invocation's write limits."""
        old = self._entries.get((doc, key))
        freed = len(old.value) if old is not None else 0
        if not self._room_for(doc, key, len(value) - freed):
            return False
        self.bytes_pending += len(value) - freed
        self._entries[(doc, key)] = Pending(Kind.SET, value)
        return True

    def delete(self, doc: str, key: str) -> bool:
        """Stage a delete; False if it would pass the invocation's write limits."""
        old = self._entries.get((doc, key))
        if not self._room_for(doc, key, 0):
            return False
        if old is not None:
            self.bytes_pending -= len(old.value)
        self._entries[(doc, key)] = Pending(Kind.DELETED)
        return True

    def incr(self, doc: str, key: str, delta: int) -> int | None:
        """Stage an increment and return the counter's new total.

        Returns None if the invocation's write limits are reached. Raises
        :class:`WrongTypeError` if the key holds plain bytes and
        :class:`OverflowError` if the total would leave int64.
        """
        entry = self._entries.get((doc, key))
        if entry is None:
            if not self._room_for(doc, key, 0):
                return None
            base = self.store.get_counter(doc, key) or 0  # raises WrongTypeError
            entry = Pending(Kind.INCR, base=base)
            new_entry = True
        else:
            new_entry = False
            if entry.kind is Kind.SET:
                raise WrongTypeError(f"{doc}/{key} holds a plain value, not a counter")
            if entry.kind is Kind.DELETED:
                entry = Pending(Kind.RESET_INCR)
        delta_total = entry.delta + delta
        total = entry.base + delta_total if entry.kind is Kind.INCR else delta_total
        if not (I64_MIN <= total <= I64_MAX and I64_MIN <= delta_total <= I64_MAX):
            raise OverflowError(f"counter {doc}/{key} would overflow int64")
        entry.delta = delta_total
        if new_entry or self._entries.get((doc, key)) is not entry:
            self._entries[(doc, key)] = entry
        return total

    def keys_with_prefix(self, doc: str, prefix: str) -> dict[str, bool]:
        """Overlay keys of ``doc`` under ``prefix``: True if present after the overlay."""
        return {
            key: entry.kind is not Kind.DELETED
            for (d, key), entry in self._entries.items()
            if d == doc and key.startswith(prefix)
        }

    def ops(self) -> list[WriteOp]:
        """The store operations that commit this overlay, in one batch."""
        ops: list[WriteOp] = []
        for (doc, key), entry in self._entries.items():
            if entry.kind is Kind.SET:
                ops.append(Set(doc, key, entry.value))
            elif entry.kind is Kind.DELETED:
                ops.append(Delete(doc, key))
            elif entry.kind is Kind.INCR:
                ops.append(Incr(doc, key, entry.delta))
            else:
                ops.append(Delete(doc, key))
                ops.append(Incr(doc, key, entry.delta))
        return ops
