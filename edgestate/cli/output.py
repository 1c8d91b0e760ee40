"""Rendering for the CLI: tables for people, JSON for scripts, errors at the edge."""

from __future__ import annotations

import base64
import functools
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any, ParamSpec, TypeVar

import click

from edgestate.errors import EdgestateError

P = ParamSpec("P")
R = TypeVar("R")


def describe_value(value: bytes | None, *, counter: bool) -> dict[str, Any]:
    """JSON form of a stored value: base64 always, text when it is UTF-8, int for counters."""
    if value is None:
        return {"found": False, "type": None, "base64": None, "text": None, "counter": None}
    try:
        text: str | None = value.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    return {
        "found": True,
        "type": "counter" if counter else "bytes",
        "base64": base64.b64encode(value).decode(),
        "text": None if counter else text,
        "counter": int.from_bytes(value, "little", signed=True) if counter else None,
    }


def with_text(desc: dict[str, Any]) -> dict[str, Any]:
    """Add the ``text`` field to a value as the API sends it (base64 only)."""
    text = None
    if desc.get("found") and desc.get("type") == "bytes":
        try:
            text = base64.b64decode(desc["base64"]).decode("utf-8")
        except UnicodeDecodeError:
            text = None
    return {**desc, "text": text}


def show_value(desc: dict[str, Any]) -> str:
    """Human form of :func:`describe_value`'s output."""
    if not desc["found"]:
        return "(absent)"
    if desc["type"] == "counter":
        return str(desc["counter"])
    text: str | None = desc["text"]
    if text is not None and text.isprintable():
        return text
    return "0x" + base64.b64decode(desc["base64"]).hex()


def emit_json(data: Any) -> None:
    """Print ``data`` as one JSON document."""
    click.echo(json.dumps(data, indent=2, sort_keys=True))


def emit_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Print an aligned plain-text table (numbers right-aligned)."""
    cells = [[str(c) for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    numeric = [all(isinstance(r[i], int) for r in rows) and bool(rows) for i in range(len(headers))]

    def fmt(row: Sequence[str]) -> str:
        parts = [
            cell.rjust(widths[i]) if numeric[i] else cell.ljust(widths[i])
            for i, cell in enumerate(row)
        ]
        return "  ".join(parts).rstrip()

    click.echo(fmt(list(headers)))
    click.echo("  ".join("-" * w for w in widths))
    for row in cells:
        click.echo(fmt(row))


def edge_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn an :class:`EdgestateError` into ``error: <code>: message`` and exit 1."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except EdgestateError as exc:
            click.echo(f"error: {exc.code}: {exc}", err=True)
            sys.exit(1)

    return wrapper
