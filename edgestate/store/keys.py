"""Names, keys and the LMDB key layout.

Layout (one LMDB environment, named sub-databases):

``meta``   ``format`` -> on-disk format version; ``replica`` -> this data directory's
           replica id (also the CRDT client id and the counter slot name).
``docs``   document name -> msgpack dict of its bookkeeping (log sequence, sizes).
``kv``     ``doc NUL key`` -> tag byte (``b`` bytes, ``c`` counter, ``j`` JSON of a
           foreign Yjs value) + materialized value. Document names never
           contain NUL, so one document's keys are one contiguous, key-ordered
           range: a prefix scan is a cursor walk, never a sort.
``log``    ``doc NUL seq(8 bytes, big-endian)`` -> one Yjs v1 update, in commit order.
``snap``   document name -> a Yjs v1 update holding the whole state up to ``snap_seq``.
``pending`` ``doc NUL seq`` -> a remote update that arrived before the updates it
           builds on; it is applied (and moved to ``log``) once they arrive.
"""

from __future__ import annotations

import base64
import struct

import msgpack

from edgestate.errors import InvalidCursorError, InvalidKeyError
from edgestate.store.names import check_doc_name as check_doc_name  # the one rule

SEP = b"\x00"
_SEQ = struct.Struct(">Q")
_CURSOR_VERSION = 1

# Tags of materialized values (the first byte of a kv row).
TAG_BYTES = b"b"
TAG_COUNTER = b"c"
TAG_JSON = b"j"

_I64 = struct.Struct("<q")


def pack_i64(value: int) -> bytes:
    """8 little-endian bytes of a signed 64-bit integer (a counter's materialized total)."""
    return _I64.pack(value)


def unpack_i64(raw: bytes | bytearray) -> int:
    """Inverse of :func:`pack_i64`."""
    return int(_I64.unpack(raw)[0])


def encode_key(key: object, max_bytes: int) -> bytes:
    """UTF-8 bytes of a key, or raise :class:`InvalidKeyError` naming what is wrong."""
    if not isinstance(key, str):
        raise InvalidKeyError(f"keys are strings, got {type(key).__name__}")
    if not key:
        raise InvalidKeyError("keys must not be empty")
    try:
        raw = key.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidKeyError(f"key {key[:40]!r} is not valid UTF-8: {exc.reason}") from exc
    if len(raw) > max_bytes:
        raise InvalidKeyError(f"key is {len(raw)} bytes, over the limit of {max_bytes}")
    return raw


def doc_prefix(doc: str) -> bytes:
    """LMDB key prefix shared by every row of one document (kv and log)."""
    return doc.encode() + SEP


# A document's garbage-collection record lives in the meta table under this prefix.
GC_RECORD_PREFIX = b"gc\x00"


def gc_record_key(doc: str) -> bytes:
    """Meta-table key of ``doc``'s garbage-collection record (store.gc.GcState)."""
    return GC_RECORD_PREFIX + doc.encode()


def log_key(doc: str, seq: int) -> bytes:
    """LMDB key of one update-log entry."""
    return doc.encode() + SEP + _SEQ.pack(seq)


def encode_cursor(doc: str, prefix: str, last_key: str) -> str:
    """Opaque cursor resuming a scan after ``last_key``.

    It names its document and prefix so a cursor from another scan is refused
    rather than silently returning the wrong range.
    """
    raw = msgpack.packb([_CURSOR_VERSION, doc, prefix, last_key])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, doc: str, prefix: str) -> str:
    """The last key of the previous page, or raise :class:`InvalidCursorError`."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        version, c_doc, c_prefix, last_key = msgpack.unpackb(raw)
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise InvalidCursorError(
            f"scan cursor {cursor[:40]!r} is not one this store issued"
        ) from exc
    if version != _CURSOR_VERSION or not isinstance(last_key, str):
        raise InvalidCursorError(f"scan cursor {cursor[:40]!r} is not one this store issued")
    if c_doc != doc or c_prefix != prefix:
        raise InvalidCursorError(
            f"scan cursor belongs to a scan of {c_doc!r} prefix {c_prefix!r}, "
            f"not {doc!r} prefix {prefix!r}"
        )
    return last_key
