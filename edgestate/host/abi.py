"""The host ABI: import module ``edgestate``, its error table and its functions.

The normative description is ``schemas/host-abi.json``; :data:`FUNCTIONS` and
:class:`ErrorCode` are checked against it by a test, so the two cannot drift.

Two kinds of failure are kept apart (as Spin's key-value host does): a
condition the guest can act on (absent key, denied document, full buffer) is a
negative status from :class:`ErrorCode`; a guest *bug* (a pointer or length
outside its memory, output past its limit) traps the invocation. A bug in a
host function also traps, with the exception kept for the runtime to report;
that parting happens in the trampolines of :mod:`edgestate.host.binding`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Final

import msgpack

from edgestate.errors import (
    GuestFault,
    HostCallRefused,
    InvalidCursorError,
    OutputTooLargeError,
    WrongTypeError,
)
from edgestate.host.kv import Grants, Overlay
from edgestate.host.logbudget import LogBudget
from edgestate.host.memory import GuestMemory
from edgestate.store import MAX_DOC_NAME_CHARS, Store, WriteOp, is_doc_name

IMPORT_MODULE: Final = "edgestate"
ABI_VERSION: Final = 1

log = logging.getLogger("edgestate.guest")


class ErrorCode(IntEnum):
    """Negative statuses a host function returns to the guest."""

    NOT_FOUND = -1
    ACCESS_DENIED = -2
    UNKNOWN_DOCUMENT = -3
    BAD_HANDLE = -4
    INVALID_KEY = -5
    VALUE_TOO_LARGE = -6
    WRONG_TYPE = -7
    INVALID_CURSOR = -8
    LIMIT_EXCEEDED = -9
    INVALID_ARGUMENT = -10


@dataclass(frozen=True, slots=True)
class HostFunction:
    """Name and wasm signature of one imported function."""

    name: str
    params: tuple[tuple[str, str], ...]
    results: tuple[str, ...]


def _fn(name: str, params: str, results: str) -> HostFunction:
    pairs = tuple(tuple(p.split(":")) for p in params.split()) if params else ()
    return HostFunction(name, pairs, tuple(results.split()))  # type: ignore[arg-type]


FUNCTIONS: Final[tuple[HostFunction, ...]] = (
    _fn("doc_open", "name_ptr:i32 name_len:i32", "i32"),
    _fn("kv_get", "doc:i32 key_ptr:i32 key_len:i32 out_ptr:i32 out_cap:i32", "i32"),
    _fn("kv_set", "doc:i32 key_ptr:i32 key_len:i32 val_ptr:i32 val_len:i32", "i32"),
    _fn("kv_delete", "doc:i32 key_ptr:i32 key_len:i32", "i32"),
    _fn("kv_incr", "doc:i32 key_ptr:i32 key_len:i32 delta:i64 out_ptr:i32", "i32"),
    _fn(
        "kv_scan",
        "doc:i32 prefix_ptr:i32 prefix_len:i32 cursor_ptr:i32 cursor_len:i32 "
        "out_ptr:i32 out_cap:i32",
        "i32",
    ),
    _fn("input_len", "", "i32"),
    _fn("input_read", "out_ptr:i32 out_cap:i32", "i32"),
    _fn("output_write", "ptr:i32 len:i32", "i32"),
    _fn("log", "level:i32 ptr:i32 len:i32", ""),
    _fn("now_ms", "", "i64"),
)

# Guest log levels 0..4, mapped onto the logging module's.
_LEVELS: Final = (logging.DEBUG, logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR)


@dataclass(frozen=True, slots=True, kw_only=True)
class HostLimits:
    """Per-invocation bounds on host-side resources. Each default has its reason."""

    # Open documents: a bounded table, so a guest cannot grow host memory by
    # opening names in a loop; real modules touch a handful of documents.
    max_handles: int = 16
    # Distinct keys one invocation may write: its commit is one store batch and
    # must stay well under the store's max_group_ops (4096).
    max_write_keys: int = 1024
    # Bytes one invocation may stage for writing before it commits.
    max_write_bytes: int = 8 << 20
    # Keys per kv_scan page: small enough to fit a few-KiB guest buffer.
    scan_page_keys: int = 64
    # Log lines per invocation and bytes per line: a chatty or hostile guest
    # must not flood the node's logs.
    max_log_records: int = 64
    max_log_bytes: int = 1024
    # Across all invocations of one module (host/logbudget.py): log bytes per
    # second, and a burst of two maximal invocations (64 lines of 1 KiB plus
    # overhead each), so an occasional chatty call is logged whole while a
    # flood costs the node at most ~16 KiB/s (~1.4 GB/day) per module.
    log_rate_bytes_per_s: int = 16 << 10
    log_burst_bytes: int = 2 * 64 * (1024 + 64)
    # The "lines dropped" note is itself log output: at most one per interval.
    log_note_interval_s: float = 10.0


# An invocation bound by fuel alone (a test harness, a benchmark): never reached.
_NO_DEADLINE: Final = 1 << 62

# Our cursors are a store cursor and a key: far below this.
_MAX_CURSOR = 4096


class HostEnv:
    """What every invocation of one module shares: store, grants, limits."""

    __slots__ = (
        "grants",
        "limits",
        "log_budget",
        "max_key_bytes",
        "max_output",
        "max_value_bytes",
        "module",
        "store",
        "wall_time_ms",
    )

    def __init__(
        self,
        *,
        store: Store,
        grants: Grants,
        max_output: int,
        limits: HostLimits,
        module: str,
        log_budget: LogBudget | None = None,
        wall_time_ms: int = 0,
    ) -> None:
        self.store = store
        self.wall_time_ms = wall_time_ms  # for the deadline's error message
        self.log_budget = log_budget
        self.grants = grants
        self.max_output = max_output
        self.limits = limits
        self.module = module
        self.max_key_bytes = store.config.max_key_bytes
        self.max_value_bytes = store.config.max_value_bytes


class HostContext:
    """The host state of one invocation: what its host functions act on.

    Built on every request, so it holds only per-request state and creates its
    write overlay on first use.
    """

    __slots__ = (
        "_handles",
        "_log_records",
        "_overlay",
        "_writable",
        "arrived_ns",
        "cpu_start_ns",
        "deadline_ns",
        "env",
        "fault",
        "host_calls",
        "input",
        "memory",
        "output",
        "output_size",
        "started_ns",
    )

    def __init__(self, env: HostEnv, input: bytes, memory: GuestMemory) -> None:
        self.env = env
        self.input = input
        self.memory = memory
        self.output: list[bytes] = []
        self.output_size = 0
        self.fault: Exception | None = None
        self.host_calls = 0
        # time.monotonic_ns() past which every host call traps with the wall-time
        # budget's error: epoch interruption fires only in wasm code, so a guest
        # living in host calls would otherwise overrun its budget (see binding.py).
        self.deadline_ns = _NO_DEADLINE
        # The wall budget's rule (host.budget): when its clock started (the
        # request's arrival, monotonic_ns; deadline_ns is this plus the budget),
        # when the guest started (monotonic_ns) and its thread's CPU time then
        # (thread_time_ns).
        self.arrived_ns = 0
        self.started_ns = 0
        self.cpu_start_ns = 0
        self._overlay: Overlay | None = None
        self._handles: list[str] = []
        self._writable: list[bool] = []
        self._log_records = 0

    @property
    def overlay(self) -> Overlay:
        """This invocation's staged writes."""
        if self._overlay is None:
            limits = self.env.limits
            self._overlay = Overlay(
                self.env.store, max_keys=limits.max_write_keys, max_bytes=limits.max_write_bytes
            )
        return self._overlay

    def ops(self) -> list[WriteOp]:
        """The store operations that commit this invocation's writes."""
        return [] if self._overlay is None else self._overlay.ops()

    # --- helpers --------------------------------------------------------------

    def _doc(self, handle: int, write: bool) -> str:
        if handle >= len(self._handles):
            raise HostCallRefused(ErrorCode.BAD_HANDLE)
        if write and not self._writable[handle]:
            raise HostCallRefused(ErrorCode.ACCESS_DENIED)
        return self._handles[handle]

    # Every function checks all its guest ranges before anything else, so a bad
    # pointer traps whatever else is wrong with the call.
    def _key(self, ptr: int, length: int, *, allow_empty: bool = False) -> str:
        # Lengths are checked before bytes are copied or decoded, so a guest
        # cannot make the host chew through its whole memory outside its fuel.
        if length > self.env.max_key_bytes:
            self.memory.address(ptr, length)
            raise HostCallRefused(ErrorCode.INVALID_KEY)
        try:
            key = self.memory.text(ptr, length)
        except UnicodeDecodeError:
            raise HostCallRefused(ErrorCode.INVALID_KEY) from None
        if length == 0 and not allow_empty:
            raise HostCallRefused(ErrorCode.INVALID_KEY)
        return key

    def output_bytes(self) -> bytes:
        """Everything the guest wrote with ``output_write``."""
        return b"".join(self.output)

    # --- the ABI --------------------------------------------------------------

    def doc_open(self, name_ptr: int, name_len: int) -> int:
        """Handle of a granted, existing document."""
        # Checked before the bytes are copied, so a huge length costs the host nothing.
        if name_len > MAX_DOC_NAME_CHARS:
            self.memory.address(name_ptr, name_len)
            raise HostCallRefused(ErrorCode.INVALID_ARGUMENT)
        raw = self.memory.read(name_ptr, name_len)
        try:
            name = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise HostCallRefused(ErrorCode.INVALID_ARGUMENT) from None
        # The store's one name rule: a name no document can have is a guest bug
        # (INVALID_ARGUMENT), not a question of grants.
        if not is_doc_name(name):
            raise HostCallRefused(ErrorCode.INVALID_ARGUMENT)
        # Grants are checked first so a module cannot probe which documents exist.
        if not self.env.grants.may_open(name):
            raise HostCallRefused(ErrorCode.ACCESS_DENIED)
        if name in self._handles:
            return self._handles.index(name)
        if len(self._handles) >= self.env.limits.max_handles:
            raise HostCallRefused(ErrorCode.LIMIT_EXCEEDED)
        if not self.env.store.has_document(name):
            raise HostCallRefused(ErrorCode.UNKNOWN_DOCUMENT)
        self._handles.append(name)
        self._writable.append(name in self.env.grants.write)
        return len(self._handles) - 1

    def kv_get(self, doc: int, key_ptr: int, key_len: int, out_ptr: int, out_cap: int) -> int:
        """Value length, copied to ``out_ptr`` only if it fits; NOT_FOUND if absent."""
        self.memory.address(out_ptr, out_cap)
        key = self._key(key_ptr, key_len)
        name = self._doc(doc, write=False)
        # Reads before any write skip the overlay (the common case, and the hot one).
        overlay = self._overlay
        found = (
            self.env.store.get_stored(name, key)
            if overlay is None
            else overlay.get_stored(name, key)
        )
        if found is None:
            return ErrorCode.NOT_FOUND
        stored, start = found
        length = len(stored) - start
        if length <= out_cap:
            self.memory.write_from(out_ptr, stored, start)
        return length

    def kv_set(self, doc: int, key_ptr: int, key_len: int, val_ptr: int, val_len: int) -> int:
        """Stage ``value`` under ``key``."""
        self.memory.address(val_ptr, val_len)
        key = self._key(key_ptr, key_len)
        name = self._doc(doc, write=True)
        if val_len > self.env.max_value_bytes:
            raise HostCallRefused(ErrorCode.VALUE_TOO_LARGE)
        value = self.memory.read(val_ptr, val_len)
        if not self.overlay.set(name, key, value):
            raise HostCallRefused(ErrorCode.LIMIT_EXCEEDED)
        return 0

    def kv_delete(self, doc: int, key_ptr: int, key_len: int) -> int:
        """Stage the removal of ``key`` (a no-op if absent)."""
        key = self._key(key_ptr, key_len)
        if not self.overlay.delete(self._doc(doc, write=True), key):
            raise HostCallRefused(ErrorCode.LIMIT_EXCEEDED)
        return 0

    def kv_incr(self, doc: int, key_ptr: int, key_len: int, delta: int, out_ptr: int) -> int:
        """Stage ``delta`` on a counter; its new total goes to ``out_ptr`` as an i64."""
        self.memory.address(out_ptr, 8)
        key = self._key(key_ptr, key_len)
        name = self._doc(doc, write=True)
        try:
            total = self.overlay.incr(name, key, delta)
        except WrongTypeError:
            raise HostCallRefused(ErrorCode.WRONG_TYPE) from None
        except OverflowError:
            raise HostCallRefused(ErrorCode.VALUE_TOO_LARGE) from None
        if total is None:
            raise HostCallRefused(ErrorCode.LIMIT_EXCEEDED)
        self.memory.write_i64(out_ptr, total)
        return 0

    def kv_scan(
        self,
        doc: int,
        prefix_ptr: int,
        prefix_len: int,
        cursor_ptr: int,
        cursor_len: int,
        out_ptr: int,
        out_cap: int,
    ) -> int:
        """One page of keys under a prefix, msgpack ``[keys, next_cursor | nil]``."""
        self.memory.address(out_ptr, out_cap)
        self.memory.address(cursor_ptr, cursor_len)
        if cursor_len > _MAX_CURSOR:
            raise HostCallRefused(ErrorCode.INVALID_CURSOR)
        raw_cursor = self.memory.read(cursor_ptr, cursor_len)
        prefix = self._key(prefix_ptr, prefix_len, allow_empty=True)
        name = self._doc(doc, write=False)
        page = self._scan_page(name, prefix, raw_cursor)
        encoded: bytes = msgpack.packb(page, use_bin_type=True)
        if len(encoded) <= out_cap:
            self.memory.write(out_ptr, encoded)
        return len(encoded)

    def _scan_page(self, doc: str, prefix: str, raw_cursor: bytes) -> list[Any]:
        # The guest's cursor wraps the store's opaque cursor with the last key
        # returned, so staged keys of this invocation can be merged in order.
        store_cursor: str | None = None
        after = ""
        if raw_cursor:
            try:
                decoded = msgpack.unpackb(raw_cursor, raw=False)
            except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError):
                raise HostCallRefused(ErrorCode.INVALID_CURSOR) from None
            if (
                not isinstance(decoded, list)
                or len(decoded) != 2
                or not isinstance(decoded[0], str)
                or not isinstance(decoded[1], str)
            ):
                raise HostCallRefused(ErrorCode.INVALID_CURSOR)
            store_cursor, after = decoded
        try:
            page = self.env.store.scan(
                doc, prefix, cursor=store_cursor, limit=self.env.limits.scan_page_keys
            )
        except InvalidCursorError:
            raise HostCallRefused(ErrorCode.INVALID_CURSOR) from None
        keys = {key for key, _ in page.items}
        last = page.items[-1][0] if page.cursor is not None and page.items else None
        for key, present in self.overlay.keys_with_prefix(doc, prefix).items():
            if key <= after or (last is not None and key > last):
                continue
            if present:
                keys.add(key)
            else:
                keys.discard(key)
        next_cursor = None if page.cursor is None else [page.cursor, last]
        return [sorted(keys), None if next_cursor is None else msgpack.packb(next_cursor)]

    def input_len(self) -> int:
        """Length of the invocation's input."""
        return len(self.input)

    def input_read(self, out_ptr: int, out_cap: int) -> int:
        """Input length; the input is copied to ``out_ptr`` only if it fits."""
        self.memory.address(out_ptr, out_cap)
        if len(self.input) <= out_cap:
            self.memory.write(out_ptr, self.input)
        return len(self.input)

    def output_write(self, ptr: int, length: int) -> int:
        """Append to the invocation's output; past the manifest's limit, trap."""
        self.memory.address(ptr, length)
        self.output_size += length
        if self.output_size > self.env.max_output:
            raise GuestFault(
                OutputTooLargeError(
                    f"module {self.env.module!r} wrote more than its limit of "
                    f"{self.env.max_output} output bytes"
                )
            )
        self.output.append(self.memory.read(ptr, length))
        return 0

    def log(self, level: int, ptr: int, length: int) -> None:
        """A guest log line (truncated; dropped past the per-invocation budget or
        the module's budget across invocations)."""
        self.memory.address(ptr, length)
        data = self.memory.read(ptr, min(length, self.env.limits.max_log_bytes))
        self._log_records += 1
        if self._log_records > self.env.limits.max_log_records:
            return
        budget = self.env.log_budget
        if budget is not None and not budget.take(len(data)):
            return
        pylevel = _LEVELS[level] if 0 <= level < len(_LEVELS) else logging.INFO
        # The module as a field too, for JSON logs (the node's request id joins it
        # there from the invocation's context: edgestate.node.logs).
        log.log(
            pylevel,
            "[%s] %s",
            self.env.module,
            data.decode("utf-8", "replace"),
            extra={"fields": {"module": self.env.module}},
        )

    def now_ms(self) -> int:
        """Wall-clock milliseconds since the Unix epoch."""
        return time.time_ns() // 1_000_000
