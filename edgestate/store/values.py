"""The JSON forms of stored values and of write ops, shared by the HTTP API, the
client and the CLI (schemas/openapi.yaml ``Value`` and ``BatchOp``)."""

from __future__ import annotations

import base64
from typing import Any

from edgestate.store.types import Delete, Incr, Set, WriteOp


def describe_value(value: bytes | None, *, counter: bool) -> dict[str, Any]:
    """base64 always, text when the bytes are UTF-8, the total for counters.

    schemas/cli/value.schema.json and the ``Value`` schema of schemas/openapi.yaml
    describe this shape.
    """
    if value is None:
        return {"found": False, "type": None, "base64": None, "text": None, "counter": None}
    text: str | None = None
    if not counter:
        try:
            text = value.decode("utf-8")
        except UnicodeDecodeError:
            text = None
    return {
        "found": True,
        "type": "counter" if counter else "bytes",
        "base64": base64.b64encode(value).decode(),
        "text": text,
        "counter": int.from_bytes(value, "little", signed=True) if counter else None,
    }


def op_to_json(op: WriteOp) -> dict[str, Any]:
    """One write op as a batch body entry: ``{"op": "set"|"delete"|"incr", "key", ...}``."""
    if isinstance(op, Set):
        return {"op": "set", "key": op.key, "base64": base64.b64encode(op.value).decode()}
    if isinstance(op, Delete):
        return {"op": "delete", "key": op.key}
    return {"op": "incr", "key": op.key, "delta": op.delta}


def op_from_json(doc: str, op: Any) -> WriteOp:
    """The write op a batch body entry names, for ``doc``.

    Raises TypeError or ValueError (binascii.Error for bad base64) naming what
    is wrong with the entry.
    """
    if not isinstance(op, dict):
        raise TypeError(f"each op is an object, got {type(op).__name__}")
    kind, key = op.get("op"), op.get("key")
    if not isinstance(key, str):
        raise TypeError("op.key must be a string")
    if kind == "set":
        return Set(doc, key, base64.b64decode(str(op["base64"]), validate=True))
    if kind == "delete":
        return Delete(doc, key)
    if kind == "incr":
        delta = op.get("delta", 1)
        if not isinstance(delta, int) or isinstance(delta, bool):
            raise TypeError("op.delta must be an integer")
        return Incr(doc, key, delta)
    raise ValueError(f"op must be set, delete or incr, got {kind!r}")
