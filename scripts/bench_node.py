#!/usr/bin/env python3
"""Invocation over HTTP: a real `edgestate node` against two baselines, in one run.

For 1, 8 and 64 concurrent keep-alive clients it prints requests/s and latency
median / p99 of:

- node:     POST /v1/invoke/kv-echo on a real node process (wasm sandbox + durable write)
- floor:    a minimal aiohttp handler in its own process doing the same durable
            store write without wasm (what the HTTP server and the store cost)
- spawn:    a handler that starts a fresh Python process per request to do the
            same write (what process-per-request isolation costs); 1 and 8 clients only

    .venv/bin/python scripts/bench_node.py [--seconds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

REPO = Path(__file__).resolve().parents[1]

FLOOR_SERVER = r"""
import asyncio, sys
sys.setswitchinterval(0.0002)  # the same GIL setting `edgestate node` uses
from aiohttp import web
from edgestate.store import Store, Set
store = Store.open(sys.argv[1]); store.create_document("kv")
async def handle(request):
    body = await request.read()
    key, _, value = body.partition(b"=")
    await store.abatch([Set("kv", key.decode(), value)])
    return web.Response(body=value)
app = web.Application(); app.add_routes([web.post("/v1/invoke/{m}", handle)])
web.run_app(app, host="127.0.0.1", port=int(sys.argv[2]),
            print=lambda *a: print("ready", flush=True), access_log=None)
"""

SPAWN_SERVER = r"""
import asyncio, sys
from aiohttp import web
CHILD = ("import lmdb, sys; e = lmdb.open(sys.argv[1], map_size=1 << 30); "
         "k, _, v = sys.argv[2].encode().partition(b'='); "
         "t = e.begin(write=True); t.put(k, v); t.commit(); sys.stdout.buffer.write(v)")
async def handle(request):
    body = (await request.read()).decode()
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", CHILD, sys.argv[1], body,
                                                stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    return web.Response(body=out)
app = web.Application(); app.add_routes([web.post("/v1/invoke/{m}", handle)])
web.run_app(app, host="127.0.0.1", port=int(sys.argv[2]),
            print=lambda *a: print("ready", flush=True), access_log=None)
"""


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_script(code: str, data: Path) -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(data), str(port)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert "ready" in line, line
    return proc, f"http://127.0.0.1:{port}"


def start_node(work: Path) -> tuple[subprocess.Popen[bytes], str]:
    from edgestate.client import NodeClient
    from edgestate.devkit import example_bundle, make_publisher, spawn_node

    data = work / "node"
    data.mkdir()
    publisher = make_publisher(work / "publisher")
    shutil.copy(publisher.policy_path, data / "trust-policy.json")
    proc, info = spawn_node(
        [
            "--data",
            str(data),
            "--api-port",
            "0",
            "--sync-port",
            "0",
            "--no-mdns",
            "--log-level",
            "warning",
        ],
        work / "ready.json",
        work / "node.log",
    )
    api = str(info["api"])
    client = NodeClient(api, (data / "admin.token").read_text().strip())
    bundle = example_bundle("kv_echo", publisher, REPO / "build" / "guest-wasm")
    client.deploy(bundle.wasm, bundle.manifest, bundle.signature)
    return proc, api


async def load(url: str, clients: int, seconds: float) -> tuple[float, list[float]]:
    """Keep-alive clients posting kv-echo style bodies; returns (req/s, latencies ms)."""
    latencies: list[float] = []
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector) as session:
        stop = time.perf_counter() + seconds

        async def worker(w: int) -> int:
            n = 0
            while time.perf_counter() < stop:
                t0 = time.perf_counter()
                async with session.post(
                    f"{url}/v1/invoke/kv-echo", data=f"w{w}-{n % 1000}=v{n}".encode()
                ) as resp:
                    await resp.read()
                    if resp.status != 200:
                        raise RuntimeError(f"{url}: HTTP {resp.status}")
                latencies.append((time.perf_counter() - t0) * 1000)
                n += 1
            return n

        total = sum(await asyncio.gather(*(worker(w) for w in range(clients))))
    return total / seconds, latencies


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="edgestate-bench-node-"))
    procs: list[subprocess.Popen[bytes] | subprocess.Popen[str]] = []
    try:
        node, node_url = start_node(work)
        procs.append(node)
        floor, floor_url = start_script(FLOOR_SERVER, work / "floor")
        procs.append(floor)
        spawn, spawn_url = start_script(SPAWN_SERVER, work / "spawn")
        procs.append(spawn)
        print(
            f"{'clients':>7}  {'system':<7} {'req/s':>9} {'median ms':>10} {'p99 ms':>8}  vs floor"
        )
        for clients in (1, 8, 64):
            results = {}
            for name, url in (("node", node_url), ("floor", floor_url), ("spawn", spawn_url)):
                if name == "spawn" and clients > 8:
                    continue  # 64 concurrent interpreters would only measure the OOM killer
                asyncio.run(load(url, clients, 0.5))  # warm-up
                rps, lat = asyncio.run(load(url, clients, args.seconds))
                results[name] = rps
                ratio = f"{rps / results['floor']:.2f}x" if "floor" in results else ""
                print(
                    f"{clients:>7}  {name:<7} {rps:>9,.0f} {statistics.median(lat):>10.2f} "
                    f"{p99(lat):>8.2f}  {ratio}"
                )
            print(f"{'':>7}  node / floor = {results['node'] / results['floor']:.2f}x")
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(work, ignore_errors=True)
    print(f"(cpu: {os.cpu_count()} cores; client and servers share them)")


if __name__ == "__main__":
    main()
