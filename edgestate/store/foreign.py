"""Materialized forms of the values foreign Yjs clients put in a document's root map.

Split out of :mod:`edgestate.store.crdt`, which materializes the store's own
values (bytes, counters) and hands anything else here.
"""

from __future__ import annotations

import base64
import json
import math

from pycrdt import Array, Map, Text

from edgestate.store.keys import TAG_BYTES, TAG_JSON

# JSON nesting a foreign value may have before it reads as null: json.dumps
# recurses. The codec refuses deeper plain values already (codec.skip_any); this
# bounds nested shared types (a Map in a Map ...), which it does not look into.
MAX_JSON_DEPTH = 64


def _jsonable(value: object, depth: int = 0) -> object:
    """A deterministic JSON form of a foreign value: the same on every replica
    (a repr would carry a memory address, and a Y.Map iterates in a different
    order on each replica: keys are sorted), None where there is none."""
    if depth > MAX_JSON_DEPTH:
        return None
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode()
    if isinstance(value, Map | Array):
        return _jsonable(value.to_py(), depth + 1)
    if isinstance(value, Text):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v, depth + 1) for v in value]
    return None  # XML types, subdocuments, anything else: no value of ours


def materialize_plain(value: object) -> bytes:
    """Tagged bytes stored in the materialized table for a plain CRDT value.

    Bytes as they are, a string as its UTF-8; anything else as JSON, bytes inside
    it as base64 text, a non-finite float, an XML type or a subdocument as null.
    Never raises: a value some Yjs client wrote must not stop a merge.
    """
    if isinstance(value, bytes | bytearray):
        return TAG_BYTES + bytes(value)
    if isinstance(value, str):
        return TAG_BYTES + value.encode()
    try:
        return TAG_JSON + json.dumps(_jsonable(value), allow_nan=False, sort_keys=True).encode()
    except Exception:  # whatever pycrdt or json raise on a hostile value
        return TAG_JSON + b"null"
