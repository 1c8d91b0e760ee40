"""``edgestate kv``: read and write keys through the durable path.

On a directory (``--data DIR``) writes go through the store's writer, refused while
another process holds the directory for writing; with ``--node URL --token T``
they go through the node. Either way the output is the same, and ``--json``
follows the schemas in ``schemas/cli/``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from edgestate.cli.errors_out import EXIT_NOT_FOUND, fail
from edgestate.cli.inspect_cmds import print_value
from edgestate.cli.options import CREATE_OPTION, DATA_OPTION, JSON_OPTION, optional_node_options
from edgestate.cli.output import edge_errors, emit_json
from edgestate.cli.source import Source, open_source, remember_target

if TYPE_CHECKING:
    from edgestate.client import NodeClient
    from edgestate.store import WriteOp


@click.group()
@DATA_OPTION
@optional_node_options
@click.pass_context
def kv(ctx: click.Context, data: Path, client: NodeClient | None) -> None:
    """Read and write keys through the durable path (a directory's writer lock, or a node)."""
    remember_target(ctx, data, client)


@kv.command("put")
@click.argument("doc")
@click.argument("key")
@click.argument("value")
@click.option("--hex", "is_hex", is_flag=True, help="VALUE is hex-encoded bytes.")
@CREATE_OPTION
@JSON_OPTION
@click.pass_context
@edge_errors
def kv_put(
    ctx: click.Context, doc: str, key: str, value: str, is_hex: bool, create: bool, as_json: bool
) -> None:
    """Durably write VALUE (UTF-8 text, or bytes with --hex) under KEY."""
    try:
        raw = bytes.fromhex(value) if is_hex else value.encode()
    except ValueError as exc:
        raise click.BadParameter(f"not hex: {exc}", param_hint="VALUE") from exc
    with open_source(ctx, readonly=False) as source:
        source.put(doc, key, raw, create)
    if as_json:
        emit_json({"doc": doc, "key": key, "ok": True, "bytes": len(raw)})
    else:
        click.echo(f"ok: {doc}/{key} ({len(raw)} bytes)")


@kv.command("get")
@click.argument("doc")
@click.argument("key")
@JSON_OPTION
@click.pass_context
@edge_errors
def kv_get(ctx: click.Context, doc: str, key: str, as_json: bool) -> None:
    """The value of KEY in DOC (exit status 3 if absent)."""
    with open_source(ctx, readonly=True) as source:  # a read: fine beside a running node
        print_value(source.get(doc, key), as_json)


@kv.command("delete")
@click.argument("doc")
@click.argument("key")
@JSON_OPTION
@click.pass_context
@edge_errors
def kv_delete(ctx: click.Context, doc: str, key: str, as_json: bool) -> None:
    """Durably remove KEY from DOC (exit status 3, nothing written, if it is absent)."""
    from edgestate.store import check_user_writable

    # A node's own document is refused as such, before any lookup says "absent".
    check_user_writable(doc)
    with open_source(ctx, readonly=False) as source:
        # Looked up first: the delete itself does not say whether there was a value.
        # A write racing in between may be deleted or kept; either is a delete.
        if not source.get(doc, key)["found"]:
            fail(
                "not_found",
                f"no key {key!r} in {doc!r}: nothing deleted",
                EXIT_NOT_FOUND,
                as_json=as_json,
            )
        source.delete(doc, key)
    if as_json:
        emit_json({"doc": doc, "key": key, "ok": True})
    else:
        click.echo(f"ok: deleted {doc}/{key}")


# Negative deltas ("-2") must read as numbers, not as unknown options.
@kv.command("incr", context_settings={"ignore_unknown_options": True})
@click.argument("doc")
@click.argument("key")
@click.argument("delta", type=int, default=1)
@CREATE_OPTION
@JSON_OPTION
@click.pass_context
@edge_errors
def kv_incr(
    ctx: click.Context, doc: str, key: str, delta: int, create: bool, as_json: bool
) -> None:
    """Durably add DELTA (default 1) to the counter KEY; prints the new total."""
    with open_source(ctx, readonly=False) as source:
        total = source.incr(doc, key, delta, create)
    if as_json:
        emit_json({"doc": doc, "key": key, "counter": total})
    else:
        click.echo(str(total))


def parse_import_line(doc: str, line: str, number: int, source: Source) -> WriteOp | None:
    """One line of ``kv import`` as a write op (None for an export's header line).

    The format is :mod:`edgestate.cli.kv_format`'s; the ops go to a node in the
    batch wire form of :func:`edgestate.store.op_to_json` (by the client). A
    ``counter`` line reads the counter's current total from ``source``.
    """
    from edgestate.cli.kv_format import parse_line
    from edgestate.store import Delete, Incr, Set

    try:
        parsed = parse_line(line)
    except ValueError as exc:
        raise click.BadParameter(f"line {number}: {exc}", param_hint="FILE") from exc
    if parsed is None:
        return None
    key = parsed.key
    if parsed.value is not None:
        return Set(doc, key, parsed.value)
    if parsed.incr is not None:
        return Incr(doc, key, parsed.incr)
    if parsed.counter is not None:
        current = _current_counter(source, doc, key)
        return Incr(doc, key, parsed.counter - current)
    return Delete(doc, key)


def _current_counter(source: Source, doc: str, key: str) -> int:
    from edgestate.errors import EdgestateError

    try:
        desc = source.get(doc, key)
    except EdgestateError as exc:  # the store's UnknownDocumentError, or the node's answer
        if exc.code != "unknown_document":
            raise
        return 0  # made by this import (--create)
    return int(desc["counter"]) if desc["type"] == "counter" else 0


@kv.command("import")
@click.argument("doc")
@click.argument("file", type=click.File("r"))
@click.option(
    "--batch-size",
    type=click.IntRange(1, 10_000),
    default=1000,
    show_default=True,
    help="Writes per atomic, durable batch.",
)
@CREATE_OPTION
@JSON_OPTION
@click.pass_context
@edge_errors
def kv_import(
    ctx: click.Context, doc: str, file: Any, batch_size: int, create: bool, as_json: bool
) -> None:
    """Bulk-load DOC from JSON lines (FILE, or - for stdin), e.g. a `kv export`.

    Each line: {"key": K, "value": TEXT} | {"key": K, "base64": B64} |
    {"key": K, "counter": TOTAL} | {"key": K, "incr": N} | {"key": K, "delete": true};
    an export's header line is checked and skipped. Every batch is atomic and
    durable; a bad line stops the import before its batch is written.
    """
    lines = file.readlines()
    written = 0
    started = time.perf_counter()
    with (
        open_source(ctx, readonly=False) as source,
        click.progressbar(
            length=len(lines),
            label=f"importing into {doc}",
            file=sys.stderr,
            show_pos=True,
            show_percent=True,
        ) as bar,
    ):
        pending: list[WriteOp] = []
        consumed = 0
        for number, line in enumerate(lines, 1):
            consumed += 1
            op = parse_import_line(doc, line, number, source) if line.strip() else None
            if op is not None:
                pending.append(op)
            if len(pending) >= batch_size or number == len(lines):
                if pending:
                    source.batch(doc, pending, create)
                    create = False
                    written += len(pending)
                bar.update(consumed)
                consumed, pending = 0, []
    elapsed = time.perf_counter() - started
    if as_json:
        emit_json({"doc": doc, "written": written, "seconds": round(elapsed, 3)})
    else:
        click.echo(f"imported {written} writes into {doc} in {elapsed:.2f} s")


# Keys per scan page of an export: one request each against a node.
EXPORT_PAGE_KEYS = 1000


@kv.command("export")
@click.argument("doc")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write here (atomically: all or nothing) instead of stdout.",
)
@click.pass_context
@edge_errors
def kv_export(ctx: click.Context, doc: str, out: Path | None) -> None:
    """Every key of DOC as JSON lines that `kv import` takes back.

    A header line ({"format": "edgestate-kv", "version": 1, "doc": DOC}), then one
    line per key in key order: text as "value", other bytes as "base64",
    counters as "counter" (their total). The count goes to stderr.
    """
    from edgestate.cli.kv_format import export_line, header

    lines = [header(doc)]
    with open_source(ctx, readonly=True) as source:
        cursor: str | None = None
        while True:
            page = source.scan(doc, "", cursor, EXPORT_PAGE_KEYS)
            lines.extend(export_line(item) for item in page["items"])
            cursor = page["cursor"]
            if not cursor:
                break
    text = "".join(line + "\n" for line in lines)
    if out is None:
        click.echo(text, nl=False)
    else:
        tmp = out.with_name(f".{out.name}.tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(out)
    click.echo(f"exported {len(lines) - 1} keys of {doc}", err=True)


commands: list[click.Command] = [kv]
