"""``edgestate inspect``: read-only looks at a data directory or a running node.

On a directory (``--data DIR``) it opens the store read-only, which is safe beside
a running node; with ``--node URL --token T`` it asks the node. Either way the
output is the same, and ``--json`` follows the schemas in ``schemas/cli/``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from edgestate.cli.options import DATA_OPTION, JSON_OPTION, read_only_node_options
from edgestate.cli.output import edge_errors, emit_json, emit_table, show_value
from edgestate.cli.source import DOC_FIELDS, open_source, remember_target

if TYPE_CHECKING:
    from edgestate.client import NodeClient


@click.group()
@DATA_OPTION
@read_only_node_options
@click.pass_context
def inspect(ctx: click.Context, data: Path, client: NodeClient | None) -> None:
    """Look inside a data directory (read-only, works beside a running node) or a node."""
    remember_target(ctx, data, client)


@inspect.command("docs")
@JSON_OPTION
@click.pass_context
@edge_errors
def inspect_docs(ctx: click.Context, as_json: bool) -> None:
    """Documents with key counts, update-log length and sizes."""
    with open_source(ctx, readonly=True) as source:
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
        [[r[f] for f in DOC_FIELDS] for r in rows],
    )


@inspect.command("get")
@click.argument("doc")
@click.argument("key")
@JSON_OPTION
@click.pass_context
@edge_errors
def inspect_get(ctx: click.Context, doc: str, key: str, as_json: bool) -> None:
    """The value of KEY in DOC (exit status 3 if absent)."""
    with open_source(ctx, readonly=True) as source:
        print_value(source.get(doc, key), as_json)


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
    with open_source(ctx, readonly=True) as source:
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
    with open_source(ctx, readonly=True) as source:
        stats, docs = source.stats(), source.documents()
    for field in ("keys", "log_bytes", "snapshot_bytes", "value_bytes"):
        stats[field] = sum(d[field] for d in docs)
    if as_json:
        emit_json(stats)
        return
    emit_table(["FIELD", "VALUE"], [[k, v] for k, v in sorted(stats.items())])


@inspect.command("verify")
@JSON_OPTION
@click.pass_context
@edge_errors
def inspect_verify(ctx: click.Context, as_json: bool) -> None:
    """Walk every table and decode every entry; exit status 1 on any damage.

    Reads the files (``--data``), beside a running node too; LMDB runs in a child
    process so a damaged page that would crash it is reported, not fatal.
    """
    from edgestate.errors import ConfigError, StoreCorruptError
    from edgestate.node.config import store_dir_of
    from edgestate.store import verify_in_child

    if ctx.obj["client"] is not None:
        raise ConfigError("inspect verify reads a store's files: give --data DIR, not --node")
    store_dir = store_dir_of(ctx.obj["data"])
    # Opening it read-only first names a missing or truncated store the usual way.
    with open_source(ctx, readonly=True):
        pass
    problems = verify_in_child(store_dir, decode=True)
    if as_json:
        emit_json({"store": str(store_dir), "ok": not problems, "problems": problems})
    else:
        for problem in problems:
            click.echo(problem)
        if not problems:
            click.echo(f"{store_dir}: every table walked and every entry decoded, no damage")
    if problems:
        if as_json:
            raise SystemExit(1)
        raise StoreCorruptError(f"{store_dir}: {len(problems)} problem(s) found (listed above)")


def print_value(desc: dict[str, Any], as_json: bool) -> None:
    """A value as ``get`` prints it; exit status 3 if absent.

    An absent key prints nothing on stdout (so ``$(edgestate kv get ...)`` is
    empty, never a placeholder) and says so on stderr; under --json the
    description (``"found": false``) is the answer, as the schema has it.
    """
    from edgestate.cli.errors_out import EXIT_NOT_FOUND, fail

    if as_json:
        emit_json(desc)
    elif desc["found"]:
        click.echo(show_value(desc))
    if not desc["found"]:
        if as_json:
            raise SystemExit(EXIT_NOT_FOUND)
        # absent: distinct from errors (1) and usage (2)
        fail(
            "not_found",
            f"no key {desc['key']!r} in {desc['doc']!r}",
            EXIT_NOT_FOUND,
            as_json=False,
        )


commands: list[click.Command] = [inspect]
