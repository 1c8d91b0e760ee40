"""Checks on what callers hand the store, made on their thread before a job is queued."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from edgestate.errors import StoreError, ValueTooLargeError
from edgestate.store import keys as K
from edgestate.store.types import Delete, Incr, Set, StoreConfig, WriteOp


def check_value(op: Set, config: StoreConfig) -> None:
    """Raise if a Set's value is not bytes within the size limit."""
    if not isinstance(op.value, bytes | bytearray | memoryview):
        raise ValueTooLargeError(f"values are bytes, got {type(op.value).__name__}")
    if len(op.value) > config.max_value_bytes:
        raise ValueTooLargeError(
            f"value for {op.doc}/{op.key} is {len(op.value)} bytes, over the limit of "
            f"{config.max_value_bytes}"
        )


def check_ops(ops: list[WriteOp], config: StoreConfig, require_doc: Callable[[str], None]) -> None:
    """Raise unless every op is a write op on an existing document with a valid key
    and value (``require_doc`` raises for a document that does not exist)."""
    max_key = config.max_key_bytes
    for op in ops:
        if not isinstance(op, Set | Delete | Incr):
            raise StoreError(f"not a write operation: {op!r}")
        require_doc(op.doc)
        K.encode_key(op.key, max_key)
        if isinstance(op, Set):
            check_value(op, config)
        elif isinstance(op, Incr) and (not isinstance(op.delta, int) or isinstance(op.delta, bool)):
            raise StoreError(f"increment must be an int, got {type(op.delta).__name__}")


def check_frontier(value: Mapping[int, int]) -> dict[int, int]:
    """A copy of ``value`` if it is a state vector (client -> clock), else StoreError.

    Found in review: a frontier with a string clock was stored, and every later
    compaction of the document failed on it.
    """
    try:
        items = list(value.items())
    except AttributeError:
        raise StoreError(f"a frontier is a mapping client -> clock, got {value!r}") from None
    for client, clock in items:
        for part in (client, clock):
            if type(part) is not int or not 0 <= part < 1 << 64:
                raise StoreError(
                    f"a frontier maps client ids to clocks, non-negative integers; "
                    f"got {client!r}: {clock!r}"
                )
    return dict(items)
