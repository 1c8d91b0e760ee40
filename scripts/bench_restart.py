#!/usr/bin/env python3
"""Worker restart: how long from `kill -9` of an invocation worker to a replacement serving.

One real `edgestate node` with ``--workers N`` (default 2) and kv-echo deployed;
``--kills`` times, one worker is killed with SIGKILL (by pid, from the node's
children) while ``--clients`` keep-alive clients post to kv-echo, and the time
until the node's ``edgestate_workers`` gauge is back to N with a new pid is
taken. Printed: median, p99 and max of kill -> serving, then how the load fared
(requests, failures by kind: a connection closed by the killed worker is
expected; anything else is not).

    .venv/bin/python scripts/bench_restart.py [--workers 2] [--kills 10] [--clients 8]

``--no-spare`` runs the same with ``api.spare_worker = false``, to compare.

Target (issue 11): a replacement serves within a second, under load.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_node import start_node


def serving(api: str) -> tuple[int, list[int], bool]:
    """(workers serving, their pids, a spare ready) from the node's /metrics."""
    text = urllib.request.urlopen(f"{api}/metrics", timeout=10).read().decode()
    count, pids, spare = -1, [], False
    for line in text.splitlines():
        if line.startswith("edgestate_workers "):
            count = int(float(line.split()[1]))
        elif line.startswith("edgestate_spare_workers_ready "):
            spare = float(line.split()[1]) > 0
        elif line.startswith('edgestate_worker_pid{process="worker-'):
            pids.append(int(float(line.split()[1])))
    return count, pids, spare


def load(api: str, clients: int, stop: threading.Event, outcomes: Counter[str]) -> None:
    async def client(session: aiohttp.ClientSession, c: int) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            try:
                async with session.post(
                    f"{api}/v1/invoke/kv-echo", data=f"r{c}-{n % 100}=v{n}".encode()
                ) as resp:
                    await resp.read()
                    outcomes[str(resp.status)] += 1
            except aiohttp.ClientError as exc:
                outcomes[type(exc).__name__] += 1

    async def run() -> None:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=clients)) as s:
            await asyncio.gather(*(client(s, c) for c in range(clients)))

    asyncio.run(run())


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument(
        "--no-spare",
        dest="spare",
        action="store_false",
        help="api.spare_worker = false (each replacement starts from nothing)",
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="edgestate-bench-restart-"))
    node, api = start_node(work, args.workers, spare=args.spare)
    stop = threading.Event()
    outcomes: Counter[str] = Counter()
    loader = threading.Thread(target=load, args=(api, args.clients, stop, outcomes), daemon=True)
    times: list[float] = []
    try:
        if args.clients:
            loader.start()
        for i in range(args.kills):
            time.sleep(1.2)  # past the supervisor's crash-loop window
            wait_start = time.perf_counter()
            while args.spare and not serving(api)[2]:
                if time.perf_counter() - wait_start > 60:
                    raise SystemExit("no spare worker became ready within 60 s")
                time.sleep(0.05)
            _, before, _ = serving(api)
            victim = before[i % len(before)]
            t0 = time.perf_counter()
            os.kill(victim, signal.SIGKILL)
            while True:
                count, pids, _ = serving(api)
                if victim not in pids and len(pids) == count == args.workers:
                    break
                if time.perf_counter() - t0 > 30:
                    raise SystemExit(f"no replacement for worker {victim} within 30 s")
                time.sleep(0.005)
            times.append((time.perf_counter() - t0) * 1000)
    finally:
        stop.set()
        if loader.is_alive():
            loader.join(timeout=30)
        node.send_signal(signal.SIGTERM)
        node.wait(timeout=30)
    print(
        f"kill -9 -> replacement serving, {len(times)} kills, workers={args.workers}, "
        f"spare {'on (ready before each kill)' if args.spare else 'off'}, "
        f"{args.clients} clients: median {statistics.median(times):.0f} ms, "
        f"p99 {p99(times):.0f} ms, max {max(times):.0f} ms"
    )
    print("load outcomes: " + ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items())))
    print(f"(cpu: {os.cpu_count()} cores, shared with whatever else runs)")


if __name__ == "__main__":
    main()
