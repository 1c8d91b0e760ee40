"""Where ``inspect`` and ``kv`` read and write: a data directory or a running node.

:class:`Source` is the one interface; :class:`LocalSource` opens a data directory
with :class:`edgestate.store.Store`, :class:`RemoteSource` talks to a node through
:class:`edgestate.client.NodeClient`. Both return the same shapes (those of the
node's API, which ``--json`` prints and ``schemas/cli/`` describes), and
``tests/cli/test_source.py`` runs one suite against both.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import click

if TYPE_CHECKING:
    from edgestate.client import NodeClient
    from edgestate.store import WriteOp

# The fields of one document, in the order ``inspect docs`` prints them.
DOC_FIELDS = (
    "name",
    "keys",
    "value_bytes",
    "log_entries",
    "log_bytes",
    "snapshot_bytes",
    "collected_items",
)

# Counters of this process's writer, meaningless for a directory opened just now.
_PROCESS_STATS = ("commits", "compactions")


class Source(Protocol):
    """Where inspect/kv read and write: a local directory or a running node."""

    def documents(self) -> list[dict[str, Any]]: ...
    def get(self, doc: str, key: str) -> dict[str, Any]: ...
    def scan(self, doc: str, prefix: str, cursor: str | None, limit: int) -> dict[str, Any]: ...
    def put(self, doc: str, key: str, value: bytes, create: bool) -> None: ...
    def delete(self, doc: str, key: str) -> None: ...
    def incr(self, doc: str, key: str, delta: int, create: bool) -> int: ...
    def batch(self, doc: str, ops: list[WriteOp], create: bool) -> None: ...
    def stats(self) -> dict[str, Any]: ...
    def close(self) -> None: ...


class LocalSource:
    """A data directory opened directly."""

    def __init__(self, data: Path, *, readonly: bool) -> None:
        # Imported here so that commands which never open a directory start fast.
        from edgestate.node.config import store_dir_of
        from edgestate.store import Store

        # A node's store is made by the node (`edgestate node`, `--new-store` where
        # it was lost); a bare directory may be made a store here.
        create = not (data / "admin.token").exists()
        self.store = Store.open(store_dir_of(data), readonly=readonly, create=create)

    def documents(self) -> list[dict[str, Any]]:
        out = []
        for name in self.store.documents():
            i = self.store.document_info(name)
            out.append(
                dict(
                    zip(
                        DOC_FIELDS,
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
        from edgestate.store import describe_value

        value, counter = self.store.lookup(doc, key)
        return {"doc": doc, "key": key, **describe_value(value, counter=counter)}

    def scan(self, doc: str, prefix: str, cursor: str | None, limit: int) -> dict[str, Any]:
        from edgestate.store import describe_value

        page = self.store.scan(doc, prefix, cursor, limit)
        items = [{"key": k, **describe_value(v, counter=k in page.counters)} for k, v in page.items]
        return {"doc": doc, "prefix": prefix, "items": items, "cursor": page.cursor}

    def put(self, doc: str, key: str, value: bytes, create: bool) -> None:
        _check_writable(doc)
        if create:
            self.store.create_document(doc)
        self.store.set(doc, key, value)

    def delete(self, doc: str, key: str) -> None:
        _check_writable(doc)
        self.store.delete(doc, key)

    def incr(self, doc: str, key: str, delta: int, create: bool) -> int:
        _check_writable(doc)
        if create:
            self.store.create_document(doc)
        return self.store.incr(doc, key, delta)

    def batch(self, doc: str, ops: list[WriteOp], create: bool) -> None:
        _check_ops_doc(doc, ops)
        _check_writable(doc)
        if create:
            self.store.create_document(doc)
        self.store.batch(ops)

    def stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = self.store.stats()
        for field in _PROCESS_STATS:
            stats.pop(field, None)
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
        return self.client.scan(doc, prefix, cursor, limit)

    def put(self, doc: str, key: str, value: bytes, create: bool) -> None:
        self.client.put(doc, key, value, create=create)

    def delete(self, doc: str, key: str) -> None:
        self.client.delete(doc, key)

    def incr(self, doc: str, key: str, delta: int, create: bool) -> int:
        return self.client.incr(doc, key, delta, create=create)

    def batch(self, doc: str, ops: list[WriteOp], create: bool) -> None:
        self.client.batch(doc, ops, create=create)

    def stats(self) -> dict[str, Any]:
        stats = dict(self.client.status()["store"])
        for field in _PROCESS_STATS:
            stats.pop(field, None)
        return stats

    def close(self) -> None:
        pass


def _check_writable(doc: str) -> None:
    # The node's API refuses the same (its own `_` documents); a local write must
    # not be the way around it.
    from edgestate.store import check_user_writable

    check_user_writable(doc)


def _check_ops_doc(doc: str, ops: list[WriteOp]) -> None:
    # The node's batch endpoint writes every op into the document of its URL; a
    # local batch must not quietly do something else with an op for another one.
    for op in ops:
        if op.doc != doc:
            raise ValueError(f"op for document {op.doc!r} in a batch for {doc!r}")


def remember_target(ctx: click.Context, data: Path, client: NodeClient | None) -> None:
    """Keep a group's ``--data``/``--node`` choice for its subcommands."""
    ctx.ensure_object(dict)
    ctx.obj["data"] = data
    ctx.obj["client"] = client


@contextmanager
def open_source(ctx: click.Context, *, readonly: bool) -> Iterator[Source]:
    """The source the group was pointed at, closed afterwards."""
    client: NodeClient | None = ctx.obj["client"]
    source: Source = (
        RemoteSource(client) if client else LocalSource(ctx.obj["data"], readonly=readonly)
    )
    try:
        yield source
    finally:
        source.close()
