"""The JSON form of a stored value, shared by the HTTP API and the CLI."""

from __future__ import annotations

import base64
from typing import Any


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
