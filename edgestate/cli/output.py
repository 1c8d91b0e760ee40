"""Rendering for the CLI: tables for people, JSON for scripts, errors at the edge."""

from __future__ import annotations

import base64
import functools
import json
from collections.abc import Callable, Sequence
from typing import Any, ParamSpec, TypeVar

import click

from edgestate.cli.errors_out import EXIT_ERROR, command_path, fail, wants_json
from edgestate.errors import EdgestateError

P = ParamSpec("P")
R = TypeVar("R")


def show_value(desc: dict[str, Any]) -> str:
    """Human form of :func:`edgestate.store.values.describe_value`'s output."""
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
    """Turn an :class:`EdgestateError` into the one error format and exit 1.

    The ``edgestate`` group does the same for whatever escapes a command
    (:class:`edgestate.cli.main.EdgestateGroup`); this keeps a command right when
    it is invoked on its own (a test's ``CliRunner().invoke(command)``) and knows
    the command's own ``--json``.
    """

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except EdgestateError as exc:
            ctx = click.get_current_context(silent=True)
            fail(exc.code, str(exc), EXIT_ERROR, as_json=wants_json(ctx), command=command_path(ctx))
            raise  # not reached: fail exits

    return wrapper
