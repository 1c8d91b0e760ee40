#!/usr/bin/env python3
"""Cost of the dashboard's overview with 50 nodes and 1,000 documents.

    .venv/bin/python scripts/bench_overview.py [--runs 41] [--nodes 50] [--docs 1000]

A real store in a tmp dir holds ``--docs`` documents and ``--nodes`` node records in
``_nodes`` (as their owners would write them: 8 modules, 3 links each), and a
frontier tracker holds a report of every document from every member. Prints, side
by side in one run, the median and p99 time to build the answer and encode it as
JSON, and its size, for the page's default request, the API's largest page, a
filtered one and the costliest sort. The overview is built on the node's event
loop: this is how long one poll holds it.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import click

from edgestate.node.metrics import NodeMetrics
from edgestate.node.nodebook import (
    NODES_DOC,
    RECORD_PREFIX,
    NodeBook,
    record_body,
    record_fingerprint,
)
from edgestate.node.overview import OverviewQuery, build_overview
from edgestate.store import Set, Store
from edgestate.sync.frontier import FrontierTracker


class _Source:
    """The overview's inputs, from real parts (store, metrics, tracker, node book)."""

    def __init__(self, store: Store, book: NodeBook, frontier: FrontierTracker) -> None:
        self.store, self.nodebook, self.frontier = store, book, frontier
        self.metrics = NodeMetrics()

    def status(self) -> dict[str, Any]:
        return {
            "node_id": "node-000",
            "cluster_id": "bench",
            "version": "0",
            "api": "http://127.0.0.1:1",
            "uptime_s": 1.0,
            "ready": True,
            "insecure": True,
        }

    def peer_rows(self) -> list[dict[str, Any]]:
        return []

    def module_rows(self) -> list[dict[str, Any]]:
        return _modules()


def _modules() -> list[dict[str, Any]]:
    return [
        {
            "name": f"mod-{m}",
            "state": "active",
            "version": "1.0.0",
            "offered_version": "1.0.0",
            "error_code": None,
            "error": None,
        }
        for m in range(8)
    ]


def _record(i: int, nodes: int) -> bytes:
    peers = [
        {
            "node_id": f"node-{(i + k) % nodes:03d}",
            "address": None,
            "state": "connected",
            "lag": k,
            "last_sync": time.time(),
        }
        for k in (1, 2, 3)
    ]
    body = record_body(
        api=f"http://10.0.0.{i}:7474",
        version="0",
        replica=1000 + i,
        started_at=0.0,
        modules=_modules(),
        peers=peers,
    )
    return json.dumps(
        {"format": 1, **body, "node_id": f"node-{i:03d}", "written_at": time.time()}
    ).encode()


async def _run(runs: int, nodes: int, docs: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = Store.open(Path(tmp) / "store")
        try:
            names = [f"doc-{d:04d}" for d in range(docs)]
            for name in names:
                await store.acreate_document(name)
            for start in range(0, docs, 100):
                await store.abatch(
                    [
                        Set(n, f"k{k}", b"v" * 64)
                        for n in names[start : start + 100]
                        for k in range(4)
                    ]
                )
            await store.acreate_document(NODES_DOC)
            await store.abatch(
                [
                    Set(NODES_DOC, f"{RECORD_PREFIX}node-{i:03d}", _record(i, nodes))
                    for i in range(1, nodes)
                ]
            )
            frontier = FrontierTracker(1000)
            frontier.merge({1000 + i: {n: {1000 + i: 4} for n in names} for i in range(nodes)})
            book = NodeBook(store, "node-000", lambda: record_body(
                api="http://127.0.0.1:1", version="0", replica=1000, started_at=0.0,
                modules=_modules(), peers=[],
            ), record_fingerprint)  # fmt: skip
            await book.start()
            try:
                source = _Source(store, book, frontier)
                cases = {
                    "page default (25)": {"limit": "25"},
                    "largest page (200)": {"limit": "200"},
                    "filtered": {"filter": "doc-09", "limit": "25"},
                    "sort=collected": {"sort": "collected", "limit": "25"},
                }
                # what the documents table costs most: every document's figures,
                # one read transaction each or all in one (Store.document_infos)
                reads = {
                    "infos: txn per doc": lambda: [store.document_info(n) for n in names],
                    "infos: one txn": store.document_infos,
                }
                times: dict[str, list[float]] = {c: [] for c in (*cases, *reads)}
                sizes: dict[str, int] = {}
                for _ in range(runs):
                    for case, query in cases.items():  # interleaved: noise hits all alike
                        t0 = time.perf_counter()
                        raw = json.dumps(build_overview(source, OverviewQuery.parse(query)))
                        times[case].append(time.perf_counter() - t0)
                        sizes[case] = len(raw)
                    for case, read in reads.items():
                        t0 = time.perf_counter()
                        read()
                        times[case].append(time.perf_counter() - t0)
            finally:
                await book.close()
        finally:
            store.close()
    print(f"overview with {nodes} nodes, {docs} documents, {runs} runs each")
    print(f"{'request':<22}{'median ms':>11}{'p99 ms':>9}{'answer KiB':>12}")
    for case, values in times.items():
        values.sort()
        p99 = values[min(len(values) - 1, int(len(values) * 0.99))]
        print(
            f"{case:<22}{statistics.median(values) * 1000:>11.2f}{p99 * 1000:>9.2f}"
            + (f"{sizes[case] / 1024:>12.1f}" if case in sizes else "")
        )


@click.command()
@click.option("--runs", default=41, show_default=True)
@click.option("--nodes", default=50, show_default=True)
@click.option("--docs", default=1000, show_default=True)
def main(runs: int, nodes: int, docs: int) -> None:
    """Print median and p99 build time and size of the overview."""
    asyncio.run(_run(runs, nodes, docs))


if __name__ == "__main__":
    main()
