"""``edgestate inspect`` (read-only, safe beside a running node) and ``edgestate kv``."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from edgestate.cli.output import describe_value, edge_errors, emit_json, emit_table, show_value
from edgestate.store import Store

DATA_OPTION = click.option(
    "--data",
    "data",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("data"),
    show_default=True,
    help="The node's data directory.",
)
JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")


@contextmanager
def _open(ctx: click.Context, *, readonly: bool) -> Iterator[Store]:
    store = Store.open(ctx.obj["data"], readonly=readonly)
    try:
        yield store
    finally:
        store.close()


# --- inspect -------------------------------------------------------------------


@click.group()
@DATA_OPTION
@click.pass_context
def inspect(ctx: click.Context, data: Path) -> None:
    """Look inside a data directory, read-only (works while a node runs on it)."""
    ctx.ensure_object(dict)
    ctx.obj["data"] = data


@inspect.command("docs")
@JSON_OPTION
@click.pass_context
@edge_errors
def inspect_docs(ctx: click.Context, as_json: bool) -> None:
    """Documents with key counts, update-log length and sizes."""
    with _open(ctx, readonly=True) as store:
        infos = [store.document_info(name) for name in store.documents()]
    rows = [
        {
            "name": i.name,
            "keys": i.keys,
            "value_bytes": i.value_bytes,
            "log_entries": i.log_entries,
            "log_bytes": i.log_bytes,
            "snapshot_bytes": i.snapshot_bytes,
        }
        for i in infos
    ]
    if as_json:
        emit_json({"documents": rows})
        return
    emit_table(
        ["DOCUMENT", "KEYS", "VALUE BYTES", "LOG ENTRIES", "LOG BYTES", "SNAPSHOT BYTES"],
        [
            [
                r["name"],
                r["keys"],
                r["value_bytes"],
                r["log_entries"],
                r["log_bytes"],
                r["snapshot_bytes"],
            ]
            for r in rows
        ],
    )


@inspect.command("get")
@click.argument("doc")
@click.argument("key")
@JSON_OPTION
@click.pass_context
@edge_errors
def inspect_get(ctx: click.Context, doc: str, key: str, as_json: bool) -> None:
    """The value of KEY in DOC."""
    with _open(ctx, readonly=True) as store:
        _print_value(store, doc, key, as_json)


def _print_value(store: Store, doc: str, key: str, as_json: bool) -> None:
    desc = describe_value(store.get(doc, key), counter=store.is_counter(doc, key))
    if as_json:
        emit_json({"doc": doc, "key": key, **desc})
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
    with _open(ctx, readonly=True) as store:
        page = store.scan(doc, prefix, cursor, limit)
        items = [
            {"key": k, **describe_value(v, counter=store.is_counter(doc, k))} for k, v in page.items
        ]
    if as_json:
        emit_json({"doc": doc, "prefix": prefix, "items": items, "cursor": page.cursor})
        return
    emit_table(["KEY", "VALUE"], [[i["key"], show_value(i)] for i in items])
    if page.cursor:
        click.echo(f"more: --cursor {page.cursor}")


@inspect.command("stats")
@JSON_OPTION
@click.pass_context
@edge_errors
def inspect_stats(ctx: click.Context, as_json: bool) -> None:
    """Environment figures: file size, map size, readers, document totals."""
    with _open(ctx, readonly=True) as store:
        stats: dict[str, Any] = store.stats()
        infos = [store.document_info(n) for n in store.documents()]
    stats["keys"] = sum(i.keys for i in infos)
    stats["log_bytes"] = sum(i.log_bytes for i in infos)
    stats["snapshot_bytes"] = sum(i.snapshot_bytes for i in infos)
    stats["value_bytes"] = sum(i.value_bytes for i in infos)
    if as_json:
        emit_json(stats)
        return
    emit_table(["FIELD", "VALUE"], [[k, v] for k, v in sorted(stats.items())])


# --- kv ------------------------------------------------------------------------


@click.group()
@DATA_OPTION
@click.pass_context
def kv(ctx: click.Context, data: Path) -> None:
    """Read and write keys through the durable path (needs the directory's writer lock)."""
    ctx.ensure_object(dict)
    ctx.obj["data"] = data


CREATE_OPTION = click.option("--create", is_flag=True, help="Create DOC if it does not exist yet.")


def _writable(ctx: click.Context, doc: str, create: bool) -> Store:
    store = Store.open(ctx.obj["data"])
    try:
        if create:
            store.create_document(doc)
    except BaseException:
        store.close()
        raise
    return store


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
    store = _writable(ctx, doc, create)
    with store:
        store.set(doc, key, raw)
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
    """The value of KEY in DOC."""
    with Store.open(ctx.obj["data"]) as store:
        _print_value(store, doc, key, as_json)


@kv.command("delete")
@click.argument("doc")
@click.argument("key")
@JSON_OPTION
@click.pass_context
@edge_errors
def kv_delete(ctx: click.Context, doc: str, key: str, as_json: bool) -> None:
    """Durably remove KEY from DOC."""
    with Store.open(ctx.obj["data"]) as store:
        store.delete(doc, key)
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
    store = _writable(ctx, doc, create)
    with store:
        total = store.incr(doc, key, delta)
    if as_json:
        emit_json({"doc": doc, "key": key, "counter": total})
    else:
        click.echo(str(total))


commands: list[click.Command] = [inspect, kv]
