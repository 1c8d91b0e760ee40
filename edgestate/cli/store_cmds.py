"""``edgestate inspect`` (read-only) and ``edgestate kv`` (durable writes).

Both work on a data directory directly (``--data DIR``: inspect read-only and safe
beside a running node; kv through the store's durable path, refused while another
process holds the directory for writing) or against a running node over its API
(``--node URL --token T``). Either way the output is the same, and ``--json``
follows the schemas in ``schemas/cli/``.
"""

from __future__ import annotations

import base64
import binascii
import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import click

from edgestate.cli.node_cmds import optional_node_options
from edgestate.cli.output import (
    edge_errors,
    emit_json,
    emit_table,
    show_value,
)
from edgestate.client import NodeClient
from edgestate.node.config import store_dir_of
from edgestate.store import Delete, Incr, Set, Store, WriteOp, describe_value, op_to_json

JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")

_DOC_FIELDS = (
    "name",
    "keys",
    "value_bytes",
    "log_entries",
    "log_bytes",
    "snapshot_bytes",
    "collected_items",
)


class Source(Protocol):
    """Where inspect/kv read and write: a local directory or a running node."""

    def documents(self) -> list[dict[str, Any]]: ...
    def get(self, doc: str, key: str) -> dict[str, Any]: ...
    def scan(self, doc: str, prefix: str, cursor: str | None, limit: int) -> dict[str, Any]: ...
    def put(self, doc: str, key: str, value: bytes, create: bool) -> None: ...
    def delete(self, doc: str, key: str) -> None: ...
    def incr(self, doc: str, key: str, delta: int, create: bool) -> int: ...
    def batch(self, doc: str, ops: list[WriteOp], create: bool) -> None: ...
    def close(self) -> None: ...


class LocalSource:
    """A data directory opened directly."""

    def __init__(self, data: Path, *, readonly: bool) -> None:
        self.store = Store.open(store_dir_of(data), readonly=readonly)

    def documents(self) -> list[dict[str, Any]]:
        out = []
        for name in self.store.documents():
            i = self.store.document_info(name)
            out.append(
                dict(
                    zip(
                        _DOC_FIELDS,
                        (
                            i.name,
                            i.keys,
                            i.value_bytes,
                            i.log_entries,
                            i.log_bytes,
                            i.snapshot_bytes,
                            self.store.gc_status(name).collected_items,
                        ),
                        strict=True,
                    )
                )
            )
        return out

    def get(self, doc: str, key: str) -> dict[str, Any]:
        value, counter = self.store.lookup(doc, key)
        return {"doc": doc, "key": key, **describe_value(value, counter=counter)}

    def scan(self, doc: str, prefix: str, cursor: str | None, limit: int) -> dict[str, Any]:
        page = self.store.scan(doc, prefix, cursor, limit)
        items = [{"key": k, **describe_value(v, counter=k in page.counters)} for k, v in page.items]
        return {"doc": doc, "prefix": prefix, "items": items, "cursor": page.cursor}

    def put(self, doc: str, key: str, value: bytes, create: bool) -> None:
        if create:
            self.store.create_document(doc)
        self.store.set(doc, key, value)

    def delete(self, doc: str, key: str) -> None:
        self.store.delete(doc, key)

    def incr(self, doc: str, key: str, delta: int, create: bool) -> int:
        if create:
            self.store.create_document(doc)
        return self.store.incr(doc, key, delta)

    def batch(self, doc: str, ops: list[WriteOp], create: bool) -> None:
        if create:
            self.store.create_document(doc)
        self.store.batch(ops)

    def stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = self.store.stats()
        stats.pop("commits", None)
        stats.pop("compactions", None)
        return stats

    def close(self) -> None:
        self.store.close()


class RemoteSource:
    """A running node, over its admin API."""

    def __init__(self, client: NodeClient) -> None:
        self.client = client

    def documents(self) -> list[dict[str, Any]]:
        return self.client.documents()

    def get(self, doc: str, key: str) -> dict[str, Any]:
        return self.client.get(doc, key)

    def scan(self, doc: str, prefix: str, cursor: str | None, limit: int) -> dict[str, Any]:
        page = self.client.scan(doc, prefix, cursor, limit)
        return page

    def put(self, doc: str, key: str, value: bytes, create: bool) -> None:
        self.client.put(doc, key, value, create=create)

    def delete(self, doc: str, key: str) -> None:
        self.client.delete(doc, key)

    def incr(self, doc: str, key: str, delta: int, create: bool) -> int:
        return self.client.incr(doc, key, delta, create=create)

    def batch(self, doc: str, ops: list[WriteOp], create: bool) -> None:
        self.client.batch(doc, [op_to_json(op) for op in ops], create=create)

    def close(self) -> None:
        pass


DATA_OPTION = click.option(
    "--data",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("edgestate-data"),
    show_default=True,
    help="Data directory (a node's, or a store's).",
)


def _remember_target(ctx: click.Context, data: Path, client: NodeClient | None) -> None:
    ctx.ensure_object(dict)
    ctx.obj["data"] = data
    ctx.obj["client"] = client


@contextmanager
def _source(ctx: click.Context, *, readonly: bool) -> Iterator[Source]:
    client: NodeClient | None = ctx.obj["client"]
    source: Source = (
        RemoteSource(client) if client else LocalSource(ctx.obj["data"], readonly=readonly)
    )
    try:
        yield source
    finally:
        source.close()


# --- inspect -------------------------------------------------------------------


@click.group()
@DATA_OPTION
@optional_node_options
@click.pass_context
def inspect(ctx: click.Context, data: Path, client: NodeClient | None) -> None:
    """Look inside a data directory (read-only, works beside a running node) or a node."""
    _remember_target(ctx, data, client)


@inspect.command("docs")
@JSON_OPTION
@click.pass_context
@edge_errors
def inspect_docs(ctx: click.Context, as_json: bool) -> None:
    """Documents with key counts, update-log length and sizes."""
    with _source(ctx, readonly=True) as source:
        rows = source.documents()
    if as_json:
        emit_json({"documents": rows})
        return
    emit_table(
        [
            "DOCUMENT",
            "KEYS",
            "VALUE BYTES",
            "LOG ENTRIES",
            "LOG BYTES",
            "SNAPSHOT BYTES",
            "COLLECTED",
        ],
        [[r[f] for f in _DOC_FIELDS] for r in rows],
    )


@inspect.command("get")
@click.argument("doc")
@click.argument("key")
@JSON_OPTION
@click.pass_context
@edge_errors
def inspect_get(ctx: click.Context, doc: str, key: str, as_json: bool) -> None:
    """The value of KEY in DOC (exit status 3 if absent)."""
    with _source(ctx, readonly=True) as source:
        _print_value(source.get(doc, key), as_json)


def _print_value(desc: dict[str, Any], as_json: bool) -> None:
    if as_json:
        emit_json(desc)
    else:
        click.echo(show_value(desc))
    if not desc["found"]:
        raise SystemExit(3)  # absent: distinct from errors (1) and usage (2)


@inspect.command("scan")
@click.argument("doc")
@click.argument("prefix", default="")
@click.option("--limit", type=click.IntRange(1, 10_000), default=100, show_default=True)
@click.option("--cursor", default=None, help="Cursor printed by the previous page.")
@JSON_OPTION
@click.pass_context
@edge_errors
def inspect_scan(
    ctx: click.Context, doc: str, prefix: str, limit: int, cursor: str | None, as_json: bool
) -> None:
    """Keys of DOC starting with PREFIX, in key order, one page at a time."""
    with _source(ctx, readonly=True) as source:
        page = source.scan(doc, prefix, cursor, limit)
    if as_json:
        emit_json(page)
        return
    emit_table(["KEY", "VALUE"], [[i["key"], show_value(i)] for i in page["items"]])
    if page["cursor"]:
        click.echo(f"more: --cursor {page['cursor']}")


@inspect.command("stats")
@JSON_OPTION
@click.pass_context
@edge_errors
def inspect_stats(ctx: click.Context, as_json: bool) -> None:
    """Environment figures: file size, map size, readers, document totals."""
    if ctx.obj["client"] is not None:
        stats = dict(ctx.obj["client"].status()["store"])
        stats.pop("commits", None)
        stats.pop("compactions", None)
        docs = ctx.obj["client"].documents()
    else:
        local = LocalSource(ctx.obj["data"], readonly=True)
        try:
            stats, docs = local.stats(), local.documents()
        finally:
            local.close()
    for field in ("keys", "log_bytes", "snapshot_bytes", "value_bytes"):
        stats[field] = sum(d[field] for d in docs)
    if as_json:
        emit_json(stats)
        return
    emit_table(["FIELD", "VALUE"], [[k, v] for k, v in sorted(stats.items())])


# --- kv ------------------------------------------------------------------------


@click.group()
@DATA_OPTION
@optional_node_options
@click.pass_context
def kv(ctx: click.Context, data: Path, client: NodeClient | None) -> None:
    """Read and write keys through the durable path (a directory's writer lock, or a node)."""
    _remember_target(ctx, data, client)


CREATE_OPTION = click.option("--create", is_flag=True, help="Create DOC if it does not exist.")


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
    with _source(ctx, readonly=False) as source:
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
    with _source(ctx, readonly=True) as source:  # a read: fine beside a running node
        _print_value(source.get(doc, key), as_json)


@kv.command("delete")
@click.argument("doc")
@click.argument("key")
@JSON_OPTION
@click.pass_context
@edge_errors
def kv_delete(ctx: click.Context, doc: str, key: str, as_json: bool) -> None:
    """Durably remove KEY from DOC."""
    with _source(ctx, readonly=False) as source:
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
    with _source(ctx, readonly=False) as source:
        total = source.incr(doc, key, delta, create)
    if as_json:
        emit_json({"doc": doc, "key": key, "counter": total})
    else:
        click.echo(str(total))


def parse_import_line(doc: str, line: str, number: int) -> WriteOp:
    """One JSON line of ``kv import``: key plus value | base64 | incr | delete."""
    try:
        item = json.loads(line)
        if not isinstance(item, dict) or not isinstance(item.get("key"), str):
            raise ValueError('each line is an object with a string "key"')
        key = item["key"]
        if "value" in item:
            return Set(doc, key, str(item["value"]).encode())
        if "base64" in item:
            return Set(doc, key, base64.b64decode(item["base64"], validate=True))
        if "incr" in item:
            delta = item["incr"]
            if not isinstance(delta, int) or isinstance(delta, bool):
                raise ValueError('"incr" must be an integer')
            return Incr(doc, key, delta)
        if item.get("delete") is True:
            return Delete(doc, key)
        raise ValueError('give one of "value", "base64", "incr" or "delete": true')
    except (ValueError, binascii.Error) as exc:
        raise click.BadParameter(f"line {number}: {exc}", param_hint="FILE") from exc


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
    """Bulk-load DOC from JSON lines (FILE, or - for stdin).

    Each line: {"key": K, "value": TEXT} | {"key": K, "base64": B64} |
    {"key": K, "incr": N} | {"key": K, "delete": true}. Every batch is atomic and
    durable; a bad line stops the import before its batch is written.
    """
    lines = file.readlines()
    written = 0
    started = time.perf_counter()
    with (
        _source(ctx, readonly=False) as source,
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
            if line.strip():
                pending.append(parse_import_line(doc, line, number))
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


commands: list[click.Command] = [inspect, kv]
