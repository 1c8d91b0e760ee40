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
resolves to the plain value on every replica. A remote update (a Yjs client's, a
peer's) that leaves a key with both is completed the same way: the key's slots
are deleted in the same transaction, so a plain value written over a counter from
any side replaces it, and deleting the value later does not bring the counter back.
Values other Yjs clients may put in "root" are materialized too: a string as its
UTF-8, anything else as JSON (see :func:`edgestate.store.foreign.materialize_plain`).

No value can make materializing fail (found in review: two partitioned replicas'
legal increments summed past int64, every merge of the document raised and its
other keys stopped replicating for good). A counter reads as the sum of its slots
*saturated* to the int64 range; a slot that is not 8 bytes counts as 0; a plain
value with no JSON form reads as JSON ``null``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pycrdt import Doc, Map, TransactionEvent, merge_updates

from edgestate.errors import InvalidUpdateError, ValueTooLargeError, WrongTypeError
from edgestate.store.codec import decode_state_vector, walk
from edgestate.store.foreign import materialize_plain
from edgestate.store.keys import TAG_BYTES, TAG_COUNTER, TAG_JSON, pack_i64, unpack_i64
from edgestate.store.types import Incr, Set, WriteOp

ROOT = "root"
COUNTERS = "counters"
SLOT_SEP = "\x00"

I64_MIN = -(1 << 63)
I64_MAX = (1 << 63) - 1


# Integrated updates whose clocks :meth:`CrdtDocument.clocks` folds in rather
# than decoding the whole state vector again: walking a few small updates (a
# remote one, a local group's) costs a few us; a big local group, or many, costs
# more than one decode of a state vector of a few clients.
MAX_UNCLOCKED = 16
MAX_UNCLOCKED_BYTES = 4096


def _slot_value(raw: object) -> int:
    if isinstance(raw, bytes | bytearray) and len(raw) == 8:
        return unpack_i64(raw)
    return 0  # a slot some foreign client wrote in another shape does not count


def saturate(total: int) -> int:
    """A counter's total as it reads: the sum of its slots clamped to int64.

    Each slot is an int64, but replicas incrementing while partitioned can each
    stay legal and still sum past the range; the read saturates rather than fail.
    """
    return I64_MAX if total > I64_MAX else I64_MIN if total < I64_MIN else total


class CrdtDocument:
    """A document's CRDT plus the bookkeeping to persist what each transaction did."""

    def __init__(self, name: str, client_id: int, *, threaded: bool = False) -> None:
        self.name = name
        # threaded: built by a loader thread, then used by the writer thread.
        self.doc: Doc[Any] = Doc(client_id=client_id, allow_multithreading=threaded)
        self.root: Map[Any] = self.doc.get(ROOT, type=Map)
        self.counters: Map[Any] = self.doc.get(COUNTERS, type=Map)
        self.replica = str(client_id)
        self.last_used = time.monotonic()
        # key -> {replica: running total}: an index over "counters" so a counter's
        # total costs O(replicas), not a walk of every counter in the document.
        self._slots: dict[str, dict[str, int]] = {}
        self._updates: list[bytes] = []
        self._changed: set[str] = set()
        # Materialized values read off the root map's events (a bytes or string
        # value: the common case), so materializing needs no Map lookup (~4-7 us
        # each). ``_fresh`` fills during a transaction; ``_take`` hands it over.
        self._fresh: dict[str, bytes] = {}
        self._taken_fresh: dict[str, bytes] = {}
        # client -> next clock (the state vector as a dict), kept up to date from
        # each transaction's own update so the gap check need not decode the
        # whole state vector per remote update (O(clients): every browser session
        # is a client). None: decode it when next asked.
        self._clocks: dict[int, int] | None = None
        # Integrated updates not folded in yet: raw (walked when folded), or as
        # (client, end clock) pairs when the update integrated was the remote one
        # the gap check walked already (the common case: pycrdt re-encodes a
        # fully integrated update to the same bytes).
        self._unclocked: list[bytes | list[tuple[int, int]]] = []
        self._unclocked_b = 0  # of the raw ones
        # All observers are constant cost per transaction: the update bytes come
        # from the transaction itself, never from diffing the whole document.
        self._doc_sub = self.doc.observe(self._on_transaction)
        # The root map's raw (Rust) events: pycrdt's Python wrapper builds an
        # event object, a read transaction and a Map per event (measured ~8 us of
        # a ~12 us remote apply), and only the changed keys are used here.
        self._root_sub = self.root.integrated.observe(self._on_root)
        self._counter_sub = self.counters.observe(self._on_counters)

    def _on_transaction(self, event: TransactionEvent) -> None:
        update = event.update
        self._updates.append(update)
        if self._clocks is not None:
            self._unclocked.append(update)
            self._unclocked_b += len(update)
            if len(self._unclocked) > MAX_UNCLOCKED:
                self._clocks = None  # cheaper to decode the state vector when asked
                self._unclocked, self._unclocked_b = [], 0

    def _on_root(self, event: Any) -> None:
        keys: dict[str, dict[str, Any]] = event.keys
        self._changed.update(keys)
        fresh = self._fresh
        for key, change in keys.items():
            # .get: whatever shape a change has, this raises nothing into pycrdt.
            value: Any = change.get("newValue") if change.get("action") != "delete" else None
            kind = type(value)
            if kind is bytearray or kind is bytes:
                fresh[key] = TAG_BYTES + bytes(value)
            elif kind is str and value.isascii():
                fresh[key] = TAG_BYTES + value.encode()
            else:  # deleted, other text, a foreign value: value() looks it up
                fresh.pop(key, None)

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
        self._taken_fresh, self._fresh = self._fresh, {}
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

    def plan(self) -> WritePlan:
        """A new plan for local writes to this document (see :class:`WritePlan`)."""
        return WritePlan(self)

    def apply_remote(
        self, update: bytes, ends: list[tuple[int, int]] | None = None
    ) -> tuple[bytes | None, set[str]]:
        """Integrate a remote v1 update; returns what it added (None if nothing).

        ``ends``: the update's blocks' (client, end clock), if the caller walked
        it already; used for :meth:`clocks` when pycrdt integrated exactly it.
        """
        self.last_used = time.monotonic()
        try:
            self.doc.apply_update(update)
        except ValueError as exc:
            self._take()
            raise InvalidUpdateError(f"cannot decode update for {self.name!r}: {exc}") from exc
        unclocked = self._unclocked
        if ends is not None and unclocked and unclocked[-1] == update:
            unclocked[-1] = ends
            self._unclocked_b -= len(update)
        replaced = [k for k in self._changed if k in self._slots and k in self.root]
        if replaced:
            # Only deletes: no new structs, so the merged update stays one log entry.
            with self.doc.transaction():
                for key in replaced:
                    for replica in list(self._slots.get(key, ())):
                        del self.counters[key + SLOT_SEP + replica]
        return self._take()

    def materialized(self, keys: Iterable[str]) -> dict[str, bytes | None]:
        """Materialized (tagged) values of ``keys`` as the CRDT holds them now."""
        if self._updates or self._changed:  # changed since the last take: look up
            return {key: self.value(key) for key in keys}
        fresh = self._taken_fresh
        return {key: fresh[key] if key in fresh else self.value(key) for key in keys}

    def clocks(self) -> dict[int, int]:
        """The state vector as client -> next clock (not to be mutated).

        Exact: each transaction's update holds exactly the structs it integrated
        (pycrdt encodes it from the state before the transaction), so folding its
        blocks' end clocks in gives what decoding :meth:`state_vector` would,
        including when pycrdt keeps part of an update pending.
        """
        clocks = self._clocks
        if clocks is None:
            clocks = self._clocks = decode_state_vector(self.state_vector())
        elif self._unclocked_b > MAX_UNCLOCKED_BYTES:
            clocks = self._clocks = decode_state_vector(self.state_vector())
        elif self._unclocked:
            try:
                for entry in self._unclocked:
                    if isinstance(entry, bytes):
                        ends: list[int] = []
                        blocks, _ = walk(entry, ends=ends)
                        entry = [(c, end) for (c, _), end in zip(blocks, ends, strict=True)]
                    for client, end in entry:
                        if end > clocks.get(client, 0):
                            clocks[client] = end
            except (IndexError, ValueError):  # pycrdt's own encoding: not expected
                clocks = self._clocks = decode_state_vector(self.state_vector())
        self._unclocked, self._unclocked_b = [], 0
        return clocks

    def value(self, key: str) -> bytes | None:
        """Materialized (tagged) value of ``key`` as the CRDT holds it now."""
        try:
            plain = self.root.get(key)
        except Exception:  # pycrdt could not convert what a foreign client wrote
            return TAG_JSON + b"null"
        if plain is not None:
            return materialize_plain(plain)
        slots = self._slots.get(key)
        if slots:
            return TAG_COUNTER + pack_i64(saturate(sum(slots.values())))
        if key in self.root:
            return TAG_JSON + b"null"  # a foreign client's null: present, not absent
        return None

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


@dataclass(slots=True)
class _KeyState:
    in_root: bool | None  # None: not looked up yet (a Map lookup costs ~7 us)
    value: bytes | None
    slots: dict[str, int]


class WritePlan:
    """Local writes to one document, checked and simulated before any mutation.

    Batches from many callers are added one by one; a batch that does not fit
    (incr on a plain value, counter overflow) is refused and leaves the plan as it
    was. An increment overflows when the replica's own slot would leave int64 or
    the total *as it reads* (saturated) plus the delta would: a counter that
    concurrent replicas pushed past the range still takes increments back
    towards it, and the host overlay, which only sees the read total, agrees.
    :meth:`execute` then runs every accepted batch in *one* CRDT transaction:
    one update and one log entry per document per group commit, however many
    callers it holds. The simulation also yields each Incr's new total and the
    materialized value of every touched key, so nothing is read back from the CRDT.
    """

    def __init__(self, crdt: CrdtDocument) -> None:
        self.crdt = crdt
        self._state: dict[str, _KeyState] = {}
        self._actions: list[tuple[int, str, Any]] = []
        self._touched: set[str] = set()
        self._last_undo: tuple[int, dict[str, _KeyState | None], list[str]] | None = None

    def __bool__(self) -> bool:
        return bool(self._actions)

    def _key(self, key: str) -> _KeyState:
        st = self._state.get(key)
        if st is None:
            st = _KeyState(None, None, dict(self.crdt._slots.get(key, ())))
            self._state[key] = st
        return st

    def add(self, ops: Sequence[WriteOp]) -> list[int | None]:
        """Accept ``ops`` atomically or raise with the plan unchanged."""
        saved: dict[str, _KeyState | None] = {}
        newly_touched: list[str] = []
        undo = (len(self._actions), saved, newly_touched)
        results: list[int | None] = []
        try:
            for op in ops:
                if op.key not in saved:
                    old = self._state.get(op.key)
                    saved[op.key] = (
                        None if old is None else _KeyState(old.in_root, old.value, dict(old.slots))
                    )
                    if op.key not in self._touched:
                        newly_touched.append(op.key)
                results.append(self._add(op))
        except BaseException:
            self._undo(undo)
            raise
        self._last_undo = undo
        return results

    def rollback_last(self) -> None:
        """Undo the last successful :meth:`add` (its job failed in another document)."""
        if self._last_undo is not None:
            self._undo(self._last_undo)
            self._last_undo = None

    def _undo(self, undo: tuple[int, dict[str, _KeyState | None], list[str]]) -> None:
        n_actions, saved, newly_touched = undo
        del self._actions[n_actions:]
        self._touched.difference_update(newly_touched)
        for key, old_state in saved.items():
            if old_state is None:
                self._state.pop(key, None)
            else:
                self._state[key] = old_state

    def _add(self, op: WriteOp) -> int | None:
        st = self._key(op.key)
        act = self._actions
        n_before = len(act)
        result = self._simulate(op, st, act)
        if len(act) > n_before:
            self._touched.add(op.key)
        return result

    def _simulate(self, op: WriteOp, st: _KeyState, act: list[tuple[int, str, Any]]) -> int | None:
        if isinstance(op, Incr):
            if st.in_root is None:
                st.in_root = op.key in self.crdt.root
            if st.in_root:
                raise WrongTypeError(
                    f"{self.crdt.name}/{op.key} holds a plain value, not a counter; "
                    "delete it or set it before incrementing"
                )
            replica = self.crdt.replica
            mine = st.slots.get(replica, 0) + op.delta
            total = sum(st.slots.values())
            if not (
                I64_MIN <= mine <= I64_MAX and I64_MIN <= saturate(total) + op.delta <= I64_MAX
            ):
                raise ValueTooLargeError(f"counter {self.crdt.name}/{op.key} would overflow int64")
            st.slots[replica] = mine
            act.append((_PUT_SLOT, op.key + SLOT_SEP + replica, pack_i64(mine)))
            return saturate(total + op.delta)
        for replica in st.slots:
            act.append((_DEL_SLOT, op.key + SLOT_SEP + replica, None))
        st.slots = {}
        if isinstance(op, Set):
            value = op.value if type(op.value) is bytes else bytes(op.value)
            act.append((_PUT_ROOT, op.key, value))
            st.in_root, st.value = True, value
        elif st.in_root is not False:
            act.append((_DEL_ROOT, op.key, None))  # checked at execution if unknown here
            st.in_root, st.value = False, None
        return None

    def execute(self) -> tuple[bytes | None, dict[str, bytes | None]]:
        """Apply every accepted op in one transaction: (update, materialized values)."""
        crdt = self.crdt
        root, counters = crdt.root, crdt.counters
        crdt.last_used = time.monotonic()
        # Only the last write to each map entry reaches the CRDT. Every overwrite
        # leaves a Yjs tombstone, so a hot key (a counter many callers increment in
        # one group commit) costs one tombstone per group, not one per caller.
        last: dict[tuple[bool, str], tuple[int, Any]] = {}
        for kind, key, value in self._actions:
            target = (kind in (_PUT_SLOT, _DEL_SLOT), key)
            last.pop(target, None)  # re-insert: keep the order of last writes
            last[target] = (kind, value)
        with crdt.doc.transaction():
            for (_, key), (kind, value) in last.items():
                if kind == _PUT_ROOT:
                    root[key] = value
                elif kind == _PUT_SLOT:
                    counters[key] = value
                elif kind == _DEL_ROOT:
                    if key in root:
                        del root[key]
                elif key in counters:
                    del counters[key]
        update, _ = crdt._take()
        out: dict[str, bytes | None] = {}
        for key in self._touched:
            st = self._state[key]
            if st.in_root:
                assert st.value is not None
                out[key] = TAG_BYTES + st.value
            elif st.slots:
                out[key] = TAG_COUNTER + pack_i64(saturate(sum(st.slots.values())))
            else:
                out[key] = None
        self._actions, self._state, self._touched = [], {}, set()
        return update, out


_PUT_ROOT, _DEL_ROOT, _PUT_SLOT, _DEL_SLOT = range(4)
