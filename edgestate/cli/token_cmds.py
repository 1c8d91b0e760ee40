"""``edgestate token``: scoped client tokens for ``/yjs/{doc}`` (browsers, apps).

    edgestate token create --doc notes --doc 'team-*' [--read-only] [--create]
                           [--expires 24h] [--label TEXT]     prints the token once
    edgestate token list                                       grants and state, no secrets
    edgestate token revoke ID                                  closes its connections too

On a directory (``--data DIR``, the node stopped) the book in its store is
changed directly; with ``--node URL --token ADMIN`` the running node does it.
Tokens are node-local: a token works on the node that made it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from edgestate.cli.options import DATA_OPTION, JSON_OPTION, optional_node_options
from edgestate.cli.output import edge_errors, emit_json, emit_table

if TYPE_CHECKING:
    from edgestate.client import NodeClient
    from edgestate.store import Store


@click.group("token")
@DATA_OPTION
@optional_node_options
@click.pass_context
def token(ctx: click.Context, data: Path, client: NodeClient | None) -> None:
    """Scoped client tokens for /yjs (documents or prefixes, read-only, expiry)."""
    ctx.ensure_object(dict)
    ctx.obj["data"], ctx.obj["client"] = data, client


@token.command("create")
@click.option(
    "--doc",
    "docs",
    multiple=True,
    required=True,
    help="A document it grants: NAME, a prefix PREFIX* or * (repeat for more).",
)
@click.option("--read-only", is_flag=True, help="Sync and live updates, but no writes.")
@click.option("--create", is_flag=True, help="May also create missing documents it grants.")
@click.option("--expires", help="Lifetime, e.g. 90s, 30m, 24h, 7d, 2w (default: never).")
@click.option("--label", help="A note shown by 'token list' (who or what it is for).")
@JSON_OPTION
@click.pass_context
@edge_errors
def token_create(
    ctx: click.Context,
    docs: tuple[str, ...],
    read_only: bool,
    create: bool,
    expires: str | None,
    label: str | None,
    as_json: bool,
) -> None:
    """Make a token; it is printed this once (only its hash is kept)."""
    from edgestate.node.tokens import load_book, parse_duration, save_book

    expires_in_s = None if expires is None else parse_duration(expires)
    grant: dict[str, Any] = dict(
        read_only=read_only, create=create, expires_in_s=expires_in_s, label=label
    )
    client: NodeClient | None = ctx.obj["client"]
    if client is not None:
        row = client.create_token(list(docs), **grant)
    else:
        with _store(ctx, readonly=False) as store:
            book = load_book(store)
            secret, record = book.issue(list(docs), **grant)
            save_book(store, book)
        row = {"token": secret, **record.row(record.created_at)}
    if as_json:
        emit_json(row)
    else:
        click.echo(row["token"])
        click.echo(f"id {row['id']}: {_grant_text(row)} (shown once: keep it now)", err=True)


@token.command("list")
@JSON_OPTION
@click.pass_context
@edge_errors
def token_list(ctx: click.Context, as_json: bool) -> None:
    """Every token: id, grants, state (active, expired, revoked), no secrets."""
    from edgestate.node.tokens import load_book

    client: NodeClient | None = ctx.obj["client"]
    if client is not None:
        rows = client.tokens()
    else:
        with _store(ctx, readonly=True) as store:
            rows = load_book(store).rows()
    if as_json:
        emit_json({"tokens": rows})
        return
    emit_table(
        ["id", "state", "docs", "access", "expires", "label"],
        [
            [
                r["id"],
                r["state"],
                " ".join(r["docs"]),
                _access(r),
                _when(r["expires_at"]),
                r["label"] or "",
            ]
            for r in rows
        ],
    )


@token.command("revoke")
@click.argument("token_id", metavar="ID")
@JSON_OPTION
@click.pass_context
@edge_errors
def token_revoke(ctx: click.Context, token_id: str, as_json: bool) -> None:
    """Revoke token ID at once (a running node also closes its connections)."""
    from edgestate.node.tokens import load_book, save_book

    client: NodeClient | None = ctx.obj["client"]
    if client is not None:
        row = client.revoke_token(token_id)
    else:
        with _store(ctx, readonly=False) as store:
            book = load_book(store)
            row = book.revoke(token_id).row(time.time())
            save_book(store, book)
    if as_json:
        emit_json(row)
    else:
        click.echo(f"revoked {row['id']}")


@contextmanager
def _store(ctx: click.Context, *, readonly: bool) -> Iterator[Store]:
    """The data directory's store, closed afterwards."""
    from edgestate.node.config import store_dir_of
    from edgestate.store import Store

    store = Store.open(store_dir_of(ctx.obj["data"]), readonly=readonly)
    try:
        yield store
    finally:
        store.close()


def _access(row: dict[str, Any]) -> str:
    return ("read-only" if row["read_only"] else "read-write") + (
        "+create" if row["create"] else ""
    )


def _grant_text(row: dict[str, Any]) -> str:
    return f"{_access(row)} on {' '.join(row['docs'])}, expires {_when(row['expires_at'])}"


def _when(at: float | None) -> str:
    return "never" if at is None else time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(at))


commands: list[click.Command] = [token]
