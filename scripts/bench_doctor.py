#!/usr/bin/env python3
"""What one ``edgestate doctor`` costs: the diagnostics route on a three-node cluster.

    .venv/bin/python scripts/bench_doctor.py [--runs 21] [--docs 0,1000]

Starts three nodes on 127.0.0.1 (b and c dial a), fills ``--docs`` documents on a
(one key each, replicated), then calls ``GET /v1/admin/diagnostics`` on a ``--runs``
times beside ``GET /v1/admin/status`` (the floor of one admin round trip through the
worker relay), interleaved, and prints the median and p99 of each, per document
count, side by side. The doctor's own cost is the state-vector exchange it asks of
every connected peer plus comparing every document's vectors.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import click

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.node.conftest import NodeProcess, eventually, start_node


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


def _measure(a: NodeProcess, runs: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"status": [], "diagnostics": []}
    for _ in range(runs):
        for name, call in (("status", a.client.status), ("diagnostics", a.client.diagnostics)):
            start = time.perf_counter()
            call()
            out[name].append(time.perf_counter() - start)
    return out


@click.command()
@click.option("--runs", default=21, show_default=True, help="Calls of each route per size.")
@click.option("--docs", default="0,1000", show_default=True, help="Document counts to try.")
def main(runs: int, docs: str) -> None:
    """Print median and p99 of the diagnostics route beside status."""
    counts = [int(x) for x in docs.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        nodes: list[NodeProcess] = []
        try:
            a = start_node(root / "a", "--no-mdns")
            nodes.append(a)
            for name in ("b", "c"):
                peer = f"127.0.0.1:{a.sync_port}"
                nodes.append(start_node(root / name, "--no-mdns", "--peer", peer))
            eventually(lambda: a.client.status()["connected_peers"] == 2, what="2 peers")
            made = 0
            print(f"{'docs':>6}  {'route':<12} {'median ms':>10} {'p99 ms':>8}")
            for count in counts:
                for i in range(made, count):
                    a.client.put(f"d{i}", "k", b"v", create=True)
                made = max(made, count)
                eventually(
                    lambda last=nodes[-1], want=made: len(last.client.documents()) >= want,
                    timeout=120,
                    what="replication",
                )
                for name, values in _measure(a, runs).items():
                    print(
                        f"{count:>6}  {name:<12} {statistics.median(values) * 1e3:>10.1f} "
                        f"{_p99(values) * 1e3:>8.1f}"
                    )
        finally:
            for n in nodes:
                n.stop()


if __name__ == "__main__":
    main()
