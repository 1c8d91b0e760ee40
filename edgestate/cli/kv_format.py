"""The JSON-lines format of ``kv export`` and ``kv import`` (schemas/cli/kv-lines.schema.json).

An export is a header line, then one line per key, in key order::

    {"format": "edgestate-kv", "version": 1, "doc": "app"}
    {"key": "greeting", "value": "hello"}          UTF-8 text
    {"key": "blob", "base64": "AAEC/w=="}          any other bytes
    {"key": "visits", "counter": 42}               a counter: its total

``kv import`` takes those lines back (the header is optional, a newer version
is refused) and also the write lines ``{"key": K, "incr": N}`` and
``{"key": K, "delete": true}``. A ``counter`` line sets the counter to its total
(adding the difference to what the target holds), so importing an export twice
leaves the same state, not doubled counters.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from edgestate.errors import InvalidJSONError

FORMAT = "edgestate-kv"
VERSION = 1


def header(doc: str) -> str:
    """The first line of an export of ``doc``."""
    return json.dumps({"format": FORMAT, "version": VERSION, "doc": doc}, ensure_ascii=False)


def export_line(item: dict[str, Any]) -> str:
    """One key of a scan page (``{"key", **describe_value}``) as an export line."""
    key = item["key"]
    if item["type"] == "counter":
        out: dict[str, Any] = {"key": key, "counter": item["counter"]}
    elif item["text"] is not None:
        out = {"key": key, "value": item["text"]}
    else:
        out = {"key": key, "base64": item["base64"]}
    return json.dumps(out, ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class Line:
    """One parsed import line: what to write for ``key`` (exactly one field set)."""

    key: str
    value: bytes | None = None  # set
    incr: int | None = None  # add
    counter: int | None = None  # make the counter this total
    delete: bool = False


def _integer(item: dict[str, Any], field: str) -> int:
    number = item[field]
    if not isinstance(number, int) or isinstance(number, bool):
        raise ValueError(f'"{field}" must be an integer')
    return number


def parse_line(line: str) -> Line | None:
    """One line of an import; None for the header. ValueError names what is wrong."""
    from edgestate import jsonstrict

    try:
        item = jsonstrict.loads(line, what="the line")
    except InvalidJSONError as exc:
        raise ValueError(str(exc)) from None
    if isinstance(item, dict) and "format" in item:
        if item["format"] != FORMAT:
            raise ValueError(f"not an edgestate export (format {item['format']!r})")
        version = item.get("version")
        if not isinstance(version, int) or isinstance(version, bool) or version > VERSION:
            raise ValueError(f"export format version {version!r}; this edgestate reads {VERSION}")
        return None
    if not isinstance(item, dict) or not isinstance(item.get("key"), str):
        raise ValueError('each line is an object with a string "key"')
    key = item["key"]
    given = [f for f in ("value", "base64", "incr", "counter", "delete") if f in item]
    if len(given) != 1:
        raise ValueError(
            'give exactly one of "value", "base64", "incr", "counter" or "delete": true'
            + (f" (got {', '.join(given)})" if given else "")
        )
    field = given[0]
    if field == "value":
        if not isinstance(item["value"], str):
            raise ValueError('"value" must be a string (bytes go in "base64")')
        return Line(key, value=item["value"].encode())
    if field == "base64":
        try:
            return Line(key, value=base64.b64decode(str(item["base64"]), validate=True))
        except binascii.Error as exc:
            raise ValueError(f'"base64": {exc}') from None
    if field == "incr":
        return Line(key, incr=_integer(item, "incr"))
    if field == "counter":
        return Line(key, counter=_integer(item, "counter"))
    if item["delete"] is not True:
        raise ValueError('"delete" must be true')
    return Line(key, delete=True)
