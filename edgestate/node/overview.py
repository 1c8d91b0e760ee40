"""The dashboard's one data source: what ``GET /v1/admin/overview`` answers.

Built on each request from what the node already holds: its status, peers and
members, the replicated node records (:mod:`edgestate.node.nodebook`: the
rollout matrix and links of other nodes), the store's document figures and
garbage-collection state, and the invocation timings of :mod:`.metrics`.
Every list is bounded (constants below) and documents are paged server side,
so the answer stays small with 50 nodes and thousands of documents.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from edgestate.errors import BadRequestError
from edgestate.node.nodebook import STALE_AFTER_S, NodeBook, Seen

if TYPE_CHECKING:
    from edgestate.node.metrics import LatencyHistogram, NodeMetrics
    from edgestate.store import DocumentInfo, Store
    from edgestate.sync.frontier import FrontierTracker

# A page of the documents table: enough to scroll, small enough to redraw every
# second. The page asks for more with offset.
DEFAULT_DOC_LIMIT = 50
MAX_DOC_LIMIT = 200
MAX_FILTER_CHARS = 64
DOC_SORTS = ("bytes", "name", "keys", "log", "collected")
# Matrix rows; a node runs few modules, a cluster a few hundred at most.
MAX_MODULES = 256
# Members named as holding one document's collection back.
MAX_HOLDERS = 8


@dataclass(frozen=True, slots=True)
class OverviewQuery:
    """The documents page asked for: filter (substring), sort, offset, limit."""

    filter: str = ""
    sort: str = "bytes"
    offset: int = 0
    limit: int = DEFAULT_DOC_LIMIT

    @classmethod
    def parse(cls, query: dict[str, str]) -> OverviewQuery:
        """From URL query parameters; :class:`BadRequestError` naming a bad one."""
        unknown = sorted(set(query) - {"filter", "sort", "offset", "limit"})
        if unknown:
            raise BadRequestError(
                f"unknown overview parameter {unknown[0]!r} (filter, sort, offset, limit)"
            )
        text = query.get("filter", "")
        if len(text) > MAX_FILTER_CHARS:
            raise BadRequestError(f"filter is longer than {MAX_FILTER_CHARS} characters")
        sort = query.get("sort", "bytes")
        if sort not in DOC_SORTS:
            raise BadRequestError(f"sort must be one of {', '.join(DOC_SORTS)}, got {sort[:32]!r}")
        offset = _integer(query, "offset", 0, 0, 10**9)
        limit = _integer(query, "limit", DEFAULT_DOC_LIMIT, 1, MAX_DOC_LIMIT)
        return cls(text, sort, offset, limit)


def _integer(query: dict[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = query.get(name)
    if raw is None:
        return default
    if not raw.isascii() or not raw.isdigit() or len(raw) > 10 or not low <= int(raw) <= high:
        raise BadRequestError(f"{name} must be an integer from {low} to {high}, got {raw[:32]!r}")
    return int(raw)


class OverviewSource(Protocol):
    """What the overview is built from (the node implements it)."""

    @property
    def store(self) -> Store: ...

    @property
    def metrics(self) -> NodeMetrics: ...

    @property
    def nodebook(self) -> NodeBook: ...

    @property
    def frontier(self) -> FrontierTracker: ...

    def status(self) -> dict[str, Any]: ...

    def peer_rows(self) -> list[dict[str, Any]]: ...

    def module_rows(self) -> list[dict[str, Any]]: ...


def build_overview(node: OverviewSource, query: OverviewQuery) -> dict[str, Any]:
    """The JSON answer of ``GET /v1/admin/overview`` (schemas/openapi.yaml)."""
    now = time.time()
    status = node.status()
    peers = node.peer_rows()
    records = node.nodebook.records()
    return {
        "generated_at": now,
        "node": {
            k: status[k]
            for k in ("node_id", "cluster_id", "version", "api", "uptime_s", "ready", "insecure")
        }
        | {"replica": node.frontier.me},
        "stale_after_s": STALE_AFTER_S,
        "nodes": _nodes(status["node_id"], records, peers, now),
        "links": _links(records),
        "peers": peers,
        "modules": _matrix(records, node.module_rows()),
        "documents": _documents(node, query, records),
        "live": {
            "modules": _live_modules(node.metrics),
            "write_to_visible": node.nodebook.visible.to_json(),
        },
    }


def _nodes(
    me: str, records: list[Seen], peers: list[dict[str, Any]], now: float
) -> list[dict[str, Any]]:
    link: dict[str, dict[str, Any]] = {}
    for p in peers:  # a node may have two records (dialed and inbound): a live one wins
        if p["node_id"] and (p["node_id"] not in link or p["state"] == "connected"):
            link[p["node_id"]] = p
    rows = []
    for seen in records:
        rec = seen.record
        node_id = str(rec.get("node_id"))
        heard = seen.seen_at if seen.seen_at is not None else _number(rec.get("written_at"))
        age = None if heard is None else max(0.0, now - heard)
        peer = link.get(node_id)
        if node_id == me:
            state = "self"
        elif peer is not None and peer["state"] == "connected":
            state = "up"  # a live link is proof enough, whatever the record's age
        elif peer is not None and peer["state"] in ("backoff", "disconnected"):
            state = "down"
        elif age is not None and age <= STALE_AFTER_S:
            state = "up"
        else:
            state = "stale"
        wtv = seen.write_to_visible_s
        rows.append(
            {
                "node_id": node_id,
                "self": node_id == me,
                "state": state,
                "api": rec.get("api"),
                "version": rec.get("version"),
                "replica": rec.get("replica"),
                "last_heard_s": None if age is None else round(age, 3),
                "link": None if peer is None else peer["state"],
                "write_to_visible_ms": None if wtv is None else round(max(0.0, wtv) * 1000, 3),
            }
        )
    # peers with no record yet (just connected, or older nodes) still show
    known = {r["node_id"] for r in rows}
    for node_id, peer in link.items():
        if node_id not in known:
            connected = peer["state"] == "connected"
            rows.append(
                {
                    "node_id": node_id,
                    "self": False,
                    "state": "up" if connected else "down",
                    "api": None,
                    "version": None,
                    "replica": None,
                    "last_heard_s": None,
                    "link": peer["state"],
                    "write_to_visible_ms": None,
                }
            )
    return rows


def _links(records: list[Seen]) -> list[dict[str, Any]]:
    out = []
    for seen in records:
        source = seen.record.get("node_id")
        for p in seen.record.get("peers") or []:
            if isinstance(p, dict):
                out.append(
                    {
                        "from": source,
                        "to": p.get("node_id"),
                        "address": p.get("address"),
                        "state": p.get("state"),
                        "lag": p.get("lag"),
                        "last_sync": p.get("last_sync"),
                    }
                )
    return out


def _matrix(records: list[Seen], mine: list[dict[str, Any]]) -> dict[str, Any]:
    columns = [str(s.record.get("node_id")) for s in records]
    cells: dict[str, dict[str, Any]] = {}
    for seen in records:
        node_id = str(seen.record.get("node_id"))
        modules = seen.record.get("modules")
        for name, cell in (modules if isinstance(modules, dict) else {}).items():
            if isinstance(cell, dict) and (name in cells or len(cells) < MAX_MODULES):
                cells.setdefault(name, {})[node_id] = _cell(cell)
    if columns:  # this node's own column, live rather than as last published
        cells = {n: {k: v for k, v in c.items() if k != columns[0]} for n, c in cells.items()}
        for row in mine[:MAX_MODULES]:
            cells.setdefault(row["name"], {})[columns[0]] = _cell(row)
    rows = []
    for name in sorted(cells)[:MAX_MODULES]:
        versions = {c["version"] for c in cells[name].values() if c["state"] == "active"}
        rows.append(
            {
                "name": name,
                "cells": cells[name],
                # one version everywhere it runs, refused nowhere, on every node
                "converged": len(versions) == 1
                and len(cells[name]) == len(columns)
                and all(c["state"] == "active" for c in cells[name].values()),
            }
        )
    return {"nodes": columns, "rows": rows}


def _cell(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "state": row.get("state"),
        "version": row.get("version"),
        "offered_version": row.get("offered_version"),
        "error_code": row.get("error_code"),
    }


def _documents(node: OverviewSource, query: OverviewQuery, records: list[Seen]) -> dict[str, Any]:
    store = node.store
    names = [n for n in store.documents() if query.filter in n]
    total = len(names)
    if query.sort == "name":  # the page alone needs reading
        names.sort()
        page = [store.document_info(n) for n in names[query.offset : query.offset + query.limit]]
    else:
        infos = [i for i in store.document_infos() if query.filter in i.name]
        infos.sort(key=_sort_key(query.sort, store))
        page = infos[query.offset : query.offset + query.limit]
    node_of = {
        r.record.get("replica"): r.record.get("node_id")
        for r in records
        if isinstance(r.record.get("replica"), int)
    }
    rows = []
    for info in page:
        gc = store.gc_status(info.name)
        holders = _holding_back(node.frontier, info.name)
        rows.append(
            {
                "name": info.name,
                "keys": info.keys,
                "bytes": info.log_bytes + info.snapshot_bytes,
                "value_bytes": info.value_bytes,
                "log_entries": info.log_entries,
                "collected_items": gc.collected_items,
                "frontier_ops": None if gc.frontier is None else sum(gc.frontier.values()),
                "held_back_by": [
                    {"replica": m, "node_id": node_of.get(m), "reason": why}
                    for m, why in holders[:MAX_HOLDERS]
                ],
            }
        )
    return {
        "total": total,
        "all": len(store.documents()),
        "offset": query.offset,
        "limit": query.limit,
        "filter": query.filter,
        "sort": query.sort,
        "rows": rows,
    }


def _sort_key(sort: str, store: Store) -> Callable[[DocumentInfo], tuple[int, str]]:
    def key(i: DocumentInfo) -> tuple[int, str]:
        if sort == "keys":
            return -i.keys, i.name
        if sort == "log":
            return -i.log_entries, i.name
        if sort == "collected":
            return -store.gc_status(i.name).collected_items, i.name
        return -(i.log_bytes + i.snapshot_bytes), i.name

    return key


def _holding_back(frontier: FrontierTracker, doc: str) -> list[tuple[int, str]]:
    """Members collection of ``doc`` waits for: those that never reported it, else
    those furthest behind the newest state any member reported (most behind first)."""
    if doc in frontier.local:
        return []  # not replicated: this node alone decides
    vectors = {m: frontier.reports.get(m, {}).get(doc) for m in frontier.members}
    silent = [(m, "not reported") for m, v in vectors.items() if v is None]
    if silent:
        return silent
    sup: dict[int, int] = {}
    for v in vectors.values():
        assert v is not None
        for client, clock in v.items():
            if clock > sup.get(client, 0):
                sup[client] = clock
    # Every vector is at most sup componentwise, so how far one is behind is the
    # difference of their sums: linear in the vector, at C speed.
    top = sum(sup.values())
    behind = {m: top - sum(v.values()) for m, v in vectors.items() if v is not None}
    return [
        (m, f"{d} ops behind")
        for m, d in sorted(behind.items(), key=lambda kv: (-kv[1], kv[0]))
        if d > 0
    ]


def _live_modules(metrics: NodeMetrics) -> list[dict[str, Any]]:
    rows = []
    for name, stats in sorted(metrics.modules.items())[:MAX_MODULES]:
        ok = stats.outcomes.get("ok", 0)
        inst = _mean_ms(stats.cold_start, ok)
        exe = _mean_ms(stats.execution, ok)
        rows.append(
            {
                "name": name,
                "invocations": sum(stats.outcomes.values()),
                "ok": ok,
                "errors": {k: v for k, v in sorted(stats.outcomes.items()) if k != "ok"},
                "instantiate_ms": inst,
                "execute_ms": exe,
                # The seed's rule: a sandbox that costs more to make than to run
                # misses the point of per-request isolation.
                "instantiate_exceeds_execute": inst is not None and exe is not None and inst > exe,
            }
        )
    return rows


def _mean_ms(histogram: LatencyHistogram, count: int) -> float | None:
    return None if count == 0 else round(histogram.sum / count * 1000, 4)


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) else None
