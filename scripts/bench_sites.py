"""Beyond one LAN, in one run and one table: full vs bounded mesh, and two sites over NATS.

    .venv/bin/python scripts/bench_sites.py [--nodes 30,60] [--cut-s 60] [--tls] [--quick]

Rows, measured one after the other in this invocation (same machine, same load):

- ``N full`` / ``N bound8``: a site of N nodes as a full mesh and as a bounded
  mesh (``--max-peers``), from ``bench_mesh.run`` (nodes spread over ``--procs``
  worker processes, each its own LMDB store and daemon, insecure unless
  ``--tls``). Write-to-visible p50/p99 (the last of the N-1 other nodes), updates/s
  with every node writing, wire bytes per update per receiving node, update
  copies per receiver, links per node, convergence after 10% of the nodes
  restart, and how long the links took to come up;
- ``N bound8 tls`` (``--tls``): the bounded mesh at the largest N again with
  mutual TLS (a cluster CA, one certificate per node), beside a measurement of
  one mutual-TLS handshake on 127.0.0.1 (p50/p99);
- ``2 sites nats``: two single-node sites joined only through a local
  ``nats-server`` (JetStream), from ``bench_nats.run``: write-to-visible across
  sites, updates/s, wire bytes per update, and after site B is cut off for
  ``--cut-s`` seconds while A writes: the catch-up time and bytes against the
  missed updates' own bytes.

The targets of issue 14 are checked at the end: bounded mesh at the largest N
with p99 under 100 ms, its wire bytes per update per receiver at most 2x the
full mesh's, cross-site catch-up bytes within 1.2x of the missed updates.
Nothing here touches any address but 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import ssl
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
for where in (HERE, HERE.parent):  # the sibling benchmarks, and the checkout itself
    if str(where) not in sys.path:
        sys.path.insert(0, str(where))

import bench_mesh  # noqa: E402
import bench_nats  # noqa: E402

from edgestate.devkit.nats_server import nats_cluster  # noqa: E402
from edgestate.sync import tls  # noqa: E402

# The issue's targets (issue 14, "Beyond one LAN").
P99_TARGET_MS = 100.0
BYTES_VS_FULL_TARGET = 2.0
CATCHUP_TARGET = 1.2
# Handshakes timed for the TLS row: enough for a p99 of something that takes
# milliseconds, few enough to be a second of the run.
HANDSHAKES = 100


def mesh_rows(args: argparse.Namespace) -> list[tuple[str, dict[str, Any]]]:
    """Full and bounded mesh at each size, then (``--tls``) bounded with TLS."""
    rows: list[tuple[str, dict[str, Any]]] = []
    sizes = [int(s) for s in args.nodes.split(",")]
    runs = [
        (n, label, mp, False)
        for n in sizes
        for label, mp in topologies(args)
        if mp or args.full_max is None or n <= args.full_max
    ]
    if args.tls:
        runs.append((max(sizes), f"bound{args.max_peers} tls", args.max_peers, True))
    for n, label, max_peers, use_tls in runs:
        args.tls_run = use_tls
        with tempfile.TemporaryDirectory(prefix="bench-sites-") as tmp:
            try:
                result: dict[str, Any] = bench_mesh.run(n, max_peers, mesh_args(args), Path(tmp))
            except TimeoutError as exc:
                result = {"error": str(exc)}
        rows.append((f"{n} {label}", result))
        print_row(*rows[-1])
    return rows


def topologies(args: argparse.Namespace) -> list[tuple[str, int]]:
    return [("full", 0), (f"bound{args.max_peers}", args.max_peers)]


def mesh_args(args: argparse.Namespace) -> argparse.Namespace:
    return argparse.Namespace(
        procs=args.procs,
        writes=40 if args.quick else 200,
        flood=10 if args.quick else 50,
        restart_writes=100,
        tls=args.tls_run,
    )


def nats_row(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    """Two sites over one local nats-server (bench_nats.run, as that script runs it)."""
    if shutil.which("nats-server") is None:
        return "2 sites nats", {"error": "nats-server not found (scripts/bootstrap installs it)"}
    nargs = argparse.Namespace(
        cut=args.cut_s,
        cut_writes=500 if args.quick else 3000,
        latency_writes=100 if args.quick else 300,
        burst=1000 if args.quick else 5000,
        coalesce=0.0,
    )
    with tempfile.TemporaryDirectory(prefix="bench-sites-nats-") as tmp:
        root = Path(tmp)
        tls.init_cluster(root / "ca")
        with nats_cluster(root / "nats") as servers:
            r = asyncio.run(bench_nats.run("nats", root, root / "ca", servers[0].url, nargs))
    return "2 sites nats", {
        "p50_ms": r["p50_ms"],
        "p99_ms": r["p99_ms"],
        "updates_s": r["updates_per_s"],
        # One receiving site: bytes per update is per receiver already.
        "bytes_per_update_per_receiver": r["wire_bytes_per_update"],
        "catchup_s": r["catchup_s"],
        "catchup_bytes": r["catchup_bytes"],
        "missed_bytes": r["missed_bytes"],
        "cut_writes": r["cut_writes"],
    }


def handshake_cost(n: int = HANDSHAKES) -> dict[str, float]:
    """Milliseconds for one mutual-TLS handshake between two cluster nodes on
    127.0.0.1, with the contexts the daemon uses (p50, p99)."""
    with tempfile.TemporaryDirectory(prefix="bench-sites-tls-") as tmp:
        root = Path(tmp)
        tls.init_cluster(root / "ca")
        for name in ("a", "b"):
            tls.issue_node(root / "ca", name, root / name)
        server_ctx = tls.server_context(tls.files_for(root / "a", "a"))
        client_ctx = tls.client_context(tls.files_for(root / "b", "b"))
        return asyncio.run(_handshakes(server_ctx, client_ctx, n))


async def _handshakes(
    server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext, n: int
) -> dict[str, float]:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    times: list[float] = []
    try:
        for _ in range(n):
            t0 = time.perf_counter()
            _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_ctx)
            times.append((time.perf_counter() - t0) * 1000)
            writer.close()
            await writer.wait_closed()
    finally:
        server.close()
        await server.wait_closed()
    return {"p50_ms": statistics.median(times), "p99_ms": bench_mesh.pct(times, 0.99)}


COLUMNS = (
    ("p50 ms", "p50_ms", "{:.1f}", 8),
    ("p99 ms", "p99_ms", "{:.1f}", 8),
    ("upd/s", "updates_s", "{:.0f}", 7),
    ("B/upd/rcv", "bytes_per_update_per_receiver", "{:.0f}", 10),
    ("copies", "copies_per_receiver", "{:.2f}", 7),
    ("links", "links_mean", "{:.1f}", 6),
    ("restart s", "restart_s", "{:.2f}", 10),
    ("links up s", "links_up_s", "{:.2f}", 11),
    ("catch-up s", "catchup_s", "{:.2f}", 11),
    ("catch-up B", "catchup_bytes", "{:.0f}", 11),
    ("missed B", "missed_bytes", "{:.0f}", 10),
)


def print_header() -> None:
    print(f"{'run':<16}" + "".join(f"{title:>{width}}" for title, _, _, width in COLUMNS))


def print_row(label: str, r: dict[str, Any]) -> None:
    if "error" in r:
        print(f"{label:<16}  did not finish: {r['error']}", flush=True)
        return
    cells = [fmt.format(r[key]) if key in r else "-" for _, key, fmt, _ in COLUMNS]
    widths = [width for _, _, _, width in COLUMNS]
    print(f"{label:<16}" + "".join(f"{c:>{w}}" for c, w in zip(cells, widths, strict=True)))


def verdicts(rows: dict[str, dict[str, Any]], args: argparse.Namespace) -> list[str]:
    """One line per target of the issue: the figure, the target, met or missed."""
    n = max(int(s) for s in args.nodes.split(","))
    bound, full = rows.get(f"{n} bound{args.max_peers}", {}), rows.get(f"{n} full", {})
    nats = rows.get("2 sites nats", {})
    out = []

    def line(what: str, value: float | None, target: str, met: bool) -> None:
        if value is None:  # that row was not run (or did not finish): no verdict
            out.append(f"{what}: not measured (target {target})")
            return
        out.append(f"{what}: {value:.2f} (target {target}): {'met' if met else 'MISSED'}")

    p99 = bound.get("p99_ms")
    line(
        f"bounded mesh p99 at {n} nodes, ms",
        p99,
        f"< {P99_TARGET_MS:.0f}",
        p99 is not None and p99 < P99_TARGET_MS,
    )
    if "bytes_per_update_per_receiver" in bound and "bytes_per_update_per_receiver" in full:
        ratio = bound["bytes_per_update_per_receiver"] / full["bytes_per_update_per_receiver"]
        line(
            f"bounded/full wire bytes per update per receiver at {n}",
            ratio,
            f"<= {BYTES_VS_FULL_TARGET}",
            ratio <= BYTES_VS_FULL_TARGET,
        )
    else:
        line(
            f"bounded/full wire bytes per update per receiver at {n}"
            + ("" if full else " (no full mesh run at this size: --full-max)"),
            None,
            f"<= {BYTES_VS_FULL_TARGET}",
            False,
        )
    if "catchup_bytes" in nats:
        ratio = nats["catchup_bytes"] / max(1, nats["missed_bytes"])
        line(
            f"nats catch-up bytes / missed update bytes after a {args.cut_s:.0f} s cut",
            ratio,
            f"<= {CATCHUP_TARGET}",
            ratio <= CATCHUP_TARGET,
        )
    else:
        line("nats catch-up bytes / missed update bytes", None, f"<= {CATCHUP_TARGET}", False)
    if "p99_ms" in nats:
        # Across sites there is no target in the issue: shown for the record.
        out.append(f"nats write-to-visible across sites p99: {nats['p99_ms']:.2f} ms")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", default="30,60", help="site sizes, comma-separated")
    parser.add_argument("--max-peers", type=int, default=8)
    parser.add_argument("--procs", type=int, default=6, help="worker processes for the meshes")
    parser.add_argument(
        "--cut-s", type=float, default=None, help="seconds site B is cut off (60; --quick: 10)"
    )
    parser.add_argument(
        "--full-max",
        type=int,
        default=None,
        help="no full mesh above this many nodes (a 60-node full mesh on a loaded "
        "2-core machine did not get through its latency writes in 14 minutes)",
    )
    parser.add_argument("--tls", action="store_true", help="also the bounded mesh with mutual TLS")
    parser.add_argument("--no-nats", action="store_true", help="meshes only")
    parser.add_argument("--quick", action="store_true", help="fewer writes, a 10 s cut")
    args = parser.parse_args()
    if args.cut_s is None:
        args.cut_s = 10.0 if args.quick else 60.0
    print(
        f"beyond one LAN: meshes over {args.procs} worker processes "
        f"(insecure unless marked tls), max_peers={args.max_peers}; "
        f"{'quick' if args.quick else 'full'} run; nats cut {args.cut_s:.0f} s; loopback only"
    )
    print_header()
    rows = dict(mesh_rows(args))
    if not args.no_nats:
        label, r = nats_row(args)
        rows[label] = r
        print_row(label, r)
    if args.tls:
        hs = handshake_cost()
        print(
            f"one mutual-TLS handshake on 127.0.0.1: p50 {hs['p50_ms']:.2f} ms, "
            f"p99 {hs['p99_ms']:.2f} ms ({HANDSHAKES} handshakes)"
        )
    for text in verdicts(rows, args):
        print(text)


if __name__ == "__main__":
    main()
