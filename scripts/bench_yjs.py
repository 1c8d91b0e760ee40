"""Benchmark y-websocket client to client: edgestate's ``/yjs`` against pycrdt-websocket.

    .venv/bin/python scripts/bench_yjs.py [--samples 200] [--burst 2000] [--rounds 2]
        [--workers N] [--node-args "..."] [--quick] [--no-refs]

One writer and two readers, each an off-the-shelf ``yjs`` + ``y-websocket``
client (``tests/js/bench_yjs.mjs``, all three in one node.js process so that
every timestamp comes from one clock), against, in the same run:

- edgestate, one node: writer and readers on the same node's ``/yjs``;
- edgestate, two nodes: the writer on node A, the readers on its peer B;
- pycrdt-websocket: one in-memory ``WebsocketServer`` room behind aiohttp, twice:
  with permessage-deflate (aiohttp's default, which the clients offer) and without
  (what edgestate's ``/yjs`` does); each ratio is against the better hub;
- references, not targets (``scripts/bench_yjs_refs.py``): the cheapest two-process
  relay in Python (what any two-node system pays at least) and the hub on uvloop
  (the node's loop).

Printed per system (rounds interleaved, so background load hits all alike):
client-to-client latency p50 / p99 (one 16-byte write at a time, each reader a
sample), burst throughput (N writes issued at once, one update message each,
until both readers hold all of them) and the server's CPU time per update
(every process of the system, a node's workers included), each beside the better
hub's as a ratio (p50 and p99: edgestate's over the hub's, below 1 is ahead;
burst: edgestate's over the hub's, above 1 is ahead), and MET / MISS against the
targets. Nodes run with their defaults (store durability
``sync``: every commit fsynced; ``api.workers`` invocation workers, which hand
each ``/yjs`` connection to the node) unless ``--workers`` says otherwise. Only
127.0.0.1 is used.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from bench_yjs_refs import has_uvloop

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run from a checkout without installing the package
    sys.path.insert(0, str(REPO))

JS_DIR = REPO / "tests" / "js"
HUBS = ("pycrdt-websocket hub (deflate)", "pycrdt-websocket hub (no deflate)")
# Reference systems (bench_yjs_refs): shown, never the target's baseline.
REFS = ("bare relay, two processes", "hub (no deflate, uvloop)")
CLIENT = JS_DIR / "bench_yjs.mjs"
# A bound on one measurement: a stuck system fails the run instead of hanging it.
RUN_TIMEOUT_S = 120


def _hub(conn: Connection, compress: bool) -> None:
    asyncio.run(_serve_hub(conn, compress))


def _hub_uvloop(conn: Connection, compress: bool) -> None:
    from bench_yjs_refs import run

    run(_serve_hub(conn, compress))


async def _serve_hub(conn: Connection, compress: bool) -> None:
    from aiohttp import web
    from bench_sync_baseline import Channel  # pycrdt's Channel over an aiohttp WebSocket
    from pycrdt.websocket import WebsocketServer

    async with WebsocketServer(auto_clean_rooms=False) as server:
        rooms = asyncio.Lock()

        async def handler(request: web.Request) -> web.WebSocketResponse:
            ws = web.WebSocketResponse(max_msg_size=64 << 20, compress=compress)
            await ws.prepare(request)
            # pycrdt-websocket starts a room twice when its first clients come at
            # once ("YRoom already running", the loser's connection dropped):
            # start it here, one client at a time, before serve() looks it up.
            async with rooms:
                await server.get_room(request.path)
            await server.serve(Channel(ws, request.path))
            return ws

        app = web.Application()
        app.add_routes([web.get("/{room}", handler)])
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        conn.send(runner.addresses[0][1])
        await asyncio.get_running_loop().run_in_executor(None, conn.recv)  # until told to stop
        await runner.cleanup()


@contextmanager
def pycrdt_hub(compress: bool, uvloop: bool = False) -> Iterator[System]:
    """The hub on aiohttp, with permessage-deflate (aiohttp's default) or without
    (edgestate's /yjs default): the comparison is with the better of the two.
    ``uvloop``: on uvloop's loop (a reference, see bench_yjs_refs)."""
    parent, child = mp.Pipe()
    target = _hub_uvloop if uvloop else _hub
    proc = mp.get_context("spawn").Process(target=target, args=(child, compress), daemon=True)
    proc.start()
    try:
        port = parent.recv()
        url = f"ws://127.0.0.1:{port}"
        yield System(url, url, "", "", [proc.pid])
    finally:
        parent.send("stop")
        proc.join(10)
        if proc.is_alive():
            proc.kill()


@contextmanager
def edgestate_nodes(work: Path, count: int, node_args: list[str]) -> Iterator[System]:
    from edgestate.devkit import spawn_node

    procs: list[subprocess.Popen[bytes]] = []
    infos: list[dict[str, Any]] = []
    try:
        for i in range(count):
            data = work / f"node{i}"
            data.mkdir(parents=True)
            peers = ["--peer", f"127.0.0.1:{infos[0]['sync_port']}"] if infos else []
            args = ["--data", str(data), "--api-port", "0", "--sync-port", "0", "--no-mdns"]
            command = [*args, *peers, *node_args]
            proc, info = spawn_node(command, data / "ready.json", data / "node.log")
            procs.append(proc)
            infos.append(info)
        tokens = [(work / f"node{i}" / "admin.token").read_text().strip() for i in range(count)]
        urls = [str(info["api"]).replace("http://", "ws://") + "/yjs" for info in infos]
        yield System(urls[0], urls[-1], tokens[0], tokens[-1], [p.pid for p in procs])
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def measure(system: System, room: str, args: argparse.Namespace) -> Any:
    writer, reader = system.writer_url, system.reader_url
    writer_token, reader_token = system.writer_token, system.reader_token
    command = [str(args.samples), str(args.burst), writer_token, reader_token]
    out = subprocess.run(
        ["node", str(CLIENT), writer, reader, room, *command],
        cwd=JS_DIR,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


@contextmanager
def bare_system() -> Iterator[System]:
    from bench_yjs_refs import bare_relays

    with bare_relays() as (writer, reader, pids):
        yield System(writer, reader, "", "", pids)


@dataclass(frozen=True)
class System:
    """Where the clients connect, and the server processes to charge CPU to."""

    writer_url: str
    reader_url: str
    writer_token: str
    reader_token: str
    pids: list[int]


def tree_cpu_s(roots: list[int]) -> float:
    """CPU seconds (user + system) used so far by ``roots`` and every process
    under them (a node's invocation workers, its fork server), from /proc."""
    parent: dict[int, int] = {}
    ticks: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue  # exited meanwhile
        fields = raw[raw.rindex(")") + 2 :].split()  # from field 3 (state) on
        parent[int(entry)] = int(fields[1])
        ticks[int(entry)] = int(fields[11]) + int(fields[12])  # utime, stime
    total = 0
    for pid in ticks:
        up = pid
        while up > 1 and up not in roots:
            up = parent.get(up, 0)
        if up in roots:
            total += ticks[pid]
    return total / os.sysconf("SC_CLK_TCK")


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=200, help="latency writes per round")
    parser.add_argument("--burst", type=int, default=2000, help="writes in the burst")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds per system")
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="api.workers of each node (default: the node's own default)",
    )
    parser.add_argument("--node-args", default="", help="extra `edgestate node` flags")
    parser.add_argument("--quick", action="store_true", help="50 samples, burst 500, 1 round")
    parser.add_argument(
        "--no-refs",
        dest="refs",
        action="store_false",
        help="leave out the reference systems (bench_yjs_refs: bare relays, hub on uvloop)",
    )
    args = parser.parse_args()
    if args.quick:
        args.samples, args.burst, args.rounds = 50, 500, 1
    if shutil.which("node") is None or not (JS_DIR / "node_modules" / "y-websocket").exists():
        sys.exit("error: needs node and tests/js/node_modules (cd tests/js && npm ci)")
    node_args = args.node_args.split()
    if args.workers is not None:
        node_args += ["--workers", str(args.workers)]
    systems: dict[str, Callable[[Path], AbstractContextManager[System]]] = {
        "edgestate, one node": lambda w: edgestate_nodes(w, 1, node_args),
        "edgestate, two nodes": lambda w: edgestate_nodes(w, 2, node_args),
        HUBS[0]: lambda _w: pycrdt_hub(True),
        HUBS[1]: lambda _w: pycrdt_hub(False),
    }
    if args.refs:
        systems[REFS[0]] = lambda _w: bare_system()
        if has_uvloop():
            systems[REFS[1]] = lambda _w: pycrdt_hub(False, uvloop=True)
    latency: dict[str, list[float]] = {name: [] for name in systems}
    rates: dict[str, list[float]] = {name: [] for name in systems}
    cpu: dict[str, list[float]] = {name: [] for name in systems}
    with tempfile.TemporaryDirectory(prefix="bench-yjs-") as tmp:
        for r in range(args.rounds):
            for name, start in systems.items():
                work = Path(tmp) / f"{r}-{len(latency[name])}-{name.split(',')[-1].strip()}"
                with start(work) as system:
                    before = tree_cpu_s(system.pids)
                    got = measure(system, f"bench{r}", args)
                    used = tree_cpu_s(system.pids) - before
                # Server CPU per update delivered (both phases): less bent by
                # background load than wall-clock figures.
                cpu[name].append(used * 1e6 / (args.samples + args.burst))
                latency[name].extend(got["latency_ms"])
                rates[name].append(got["burst"] / got["burst_s"])
    workers = "node default" if args.workers is None else str(args.workers)
    print(
        f"y-websocket client to client: 1 writer, 2 readers; {args.samples} latency writes "
        f"x {args.rounds} rounds, burst {args.burst} updates; api.workers: {workers}"
    )
    # Each figure against the better hub for it (lower latency and CPU, higher burst).
    hub_p50 = min(statistics.median(latency[h]) for h in HUBS)
    hub_p99 = min(_p(latency[h], 0.99) for h in HUBS)
    hub_rate = max(statistics.median(rates[h]) for h in HUBS)
    hub_cpu = min(statistics.median(cpu[h]) for h in HUBS)
    print(
        f"{'system':<34} {'p50 ms':>8} {'p99 ms':>8} {'burst upd/s':>12}"
        f" {'p50/hub':>8} {'p99/hub':>8} {'burst/hub':>10} {'cpu us/upd':>11} {'cpu/hub':>8}"
    )
    verdicts = []
    for name in systems:
        lat = latency[name]
        p50, p99, rate = statistics.median(lat), _p(lat, 0.99), statistics.median(rates[name])
        used = statistics.median(cpu[name])
        print(
            f"{name:<34} {p50:>8.2f} {p99:>8.2f} {rate:>12,.0f}"
            f" {p50 / hub_p50:>7.2f}x {p99 / hub_p99:>7.2f}x {rate / hub_rate:>9.2f}x"
            f" {used:>11,.0f} {used / hub_cpu:>7.2f}x"
        )
        if name not in HUBS and name not in REFS:
            verdicts += [
                f"{_verdict(p50 < hub_p50)}  {name}: p50 {p50 / hub_p50:.2f}x the better hub's"
                " (target < 1)",
                f"{_verdict(rate > hub_rate)}  {name}: burst {rate / hub_rate:.2f}x the better"
                " hub's (target > 1)",
            ]
    print("(ratios: against the better of the two hubs for each column)")
    if args.refs:
        print(
            f"(references, not targets: {REFS[0]}: the cheapest two-process Python path, no"
            f" CRDT or store; {REFS[1]}: the hub on the node's loop)"
        )
    print("\n".join(verdicts))


def _verdict(met: bool) -> str:
    return "MET " if met else "MISS"


if __name__ == "__main__":
    main()
