#!/usr/bin/env python3
"""Invocation over HTTP: a real `edgestate node` against two baselines, in one run.

For 1, 8 and 64 concurrent keep-alive clients it prints requests/s, latency
median / p99, how the invocations spread over the workers (% per worker index,
from edgestate_worker_invocations_total) and CPU seconds per 1,000 invocations
of each server process and in total, of:

- node-wN:  POST /v1/invoke/kv-echo on a real node process with api.workers = N
            (0: in-process; 1, 2: worker processes), wasm sandbox + durable write
- node-w2-shared, node-w2-uvloop, node-w2-asyncio (--variants): api.workers = 2
            with one shared accept queue (api.reuse_port = false), on uvloop, and on
            asyncio's loop (api.event_loop; the default, auto, is uvloop if installed)
- floor:    a minimal aiohttp handler in its own process doing the same durable
            store write without wasm (what the HTTP server and the store cost)
- skeleton-w2, skeleton-w2-wasm (--skeleton): the worker design with only its
            essentials (scripts/bench_skeleton.py): 2 workers on one port, each
            write one msgpack message to a writer process doing the floor's store
            write; -wasm also runs kv-echo in edgestate's sandbox inline, -arun
            on the real admission and guest threads (lower bounds)
- spawn:    a handler that starts a fresh Python process per request to do the
            same write (what process-per-request isolation costs); 1 and 8 clients only

    .venv/bin/python scripts/bench_node.py [--seconds 3] [--workers 0,1,2]
        [--clients 1,8,64] [--rounds N] [--base TREE] [--env NAME:K=V,...]

Before/after in one run: ``--base TREE`` (e.g. ``git archive main | tar -x -C
TREE``) runs that tree's node-wN beside this one's as base-wN; ``--env`` adds a
node-w2 with more environment (any ``EDGESTATE_*`` setting); ``--rounds N``
repeats each client count with the systems interleaved and prints the median and
range of req/s, x floor and CPU per 1,000 invocations of each.

The load generator is `wrk` (Debian package `wrk`; C, a fraction of the servers'
CPU) when it is installed, else an aiohttp client in this process (which then
competes with the servers for the same cores: figures drop).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import aiohttp

REPO = Path(__file__).resolve().parents[1]
# skeleton-w2[-wasm]: the worker design with only its essentials (a lower bound)
SKELETON = Path(__file__).resolve().with_name("bench_skeleton.py")

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


def start_script(code: str | Path, data: Path, *extra: str) -> tuple[subprocess.Popen[str], str]:
    """A server from ``code`` (a script file, or ``-c`` text) given DATA PORT EXTRA..."""
    port = free_port()
    run = [str(code)] if isinstance(code, Path) else ["-c", code]
    proc = subprocess.Popen(
        [sys.executable, *run, str(data), str(port), *extra], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert "ready" in line, line
    return proc, f"http://127.0.0.1:{port}"


def start_node(
    work: Path,
    workers: int,
    *,
    spare: bool = True,
    api: str = "",
    label: str = "",
    env: dict[str, str] | None = None,
) -> tuple[subprocess.Popen[bytes], str]:
    """A node with ``api.workers = workers`` and kv-echo deployed; ``api``: more
    [api] settings (TOML lines) of a variant; ``env``: more environment (another
    source tree on PYTHONPATH: --base)."""
    from edgestate.client import NodeClient
    from edgestate.devkit import example_bundle, make_publisher, spawn_node

    work = work / f"w{workers}{'' if spare else '-nospare'}{label}"
    work.mkdir()
    data = work / "node"
    data.mkdir()
    config = work / "node.toml"
    config.write_text(f"[api]\nspare_worker = {'true' if spare else 'false'}\n{api}")
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
            os.environ.get("BENCH_LOG_LEVEL", "warning"),
            "--workers",
            str(workers),
            "--config",
            str(config),
        ],
        work / "ready.json",
        work / "node.log",
        timeout=120,  # a start on a machine loaded by other work takes its time
        env=None if env is None else {**os.environ, **env},
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


WRK_SCRIPT = r"""
local n = 0
request = function()
  n = n + 1
  local k = "w" .. (n % 997)
  return wrk.format("POST", "/v1/invoke/kv-echo", nil, k .. "=v" .. n)
end
done = function(summary, latency, requests)
  io.write(string.format("RESULT %d %d %d %d %d\n", summary.requests, summary.errors.status
    + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50), latency:percentile(99), summary.duration))
end
"""


def wrk_load(
    url: str, clients: int, seconds: float, script: Path
) -> tuple[float, float, float, int]:
    """(req/s, median ms, p99 ms, errors) from wrk with ``clients`` connections on
    1 thread. Errors (non-2xx, timeouts) are reported, not fatal: on a loaded
    machine one 2 s timeout must not lose the whole run."""
    out = subprocess.run(
        ["wrk", "-t1", f"-c{clients}", f"-d{max(1, round(seconds))}s", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    line = next(x for x in out.splitlines() if x.startswith("RESULT"))
    requests, errors, p50, p99_us, duration_us = (int(v) for v in line.split()[1:])
    return requests / (duration_us / 1e6), p50 / 1000, p99_us / 1000, errors


def cpu_seconds(pid: int) -> float:
    """User + system CPU of one process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def processes(pid: int) -> dict[str, int]:
    """The server process and its worker processes, by role (w0...: workers and the
    spare, children of the node or of its fork server, the zygote)."""
    out = {"main": pid}
    workers: list[int] = []
    for child in _children(pid):
        cmdline = _cmdline(child)
        if b"workers.zygote" in cmdline:
            out["zygote"] = child
            workers += _children(child)
        elif b"workers.main" in cmdline or b"\0skeleton-worker\0" in cmdline:
            workers.append(child)
    for i, worker in enumerate(sorted(workers)):
        out[f"w{i}"] = worker
    return out


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def rss_mb(pid: int) -> float:
    """Resident memory of one process, MB."""
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


def measure(
    url: str, pid: int, clients: int, seconds: float, script: Path | None
) -> dict[str, object]:
    procs = processes(pid)
    if script is not None:
        wrk_load(url, clients, 0.5, script)  # warm-up
    else:
        asyncio.run(load(url, clients, 0.5))
    before = {k: cpu_seconds(p) for k, p in procs.items()}
    children = resource.getrusage(resource.RUSAGE_CHILDREN)  # wrk, once it has exited
    if script is not None:
        rps, median, tail, errors = wrk_load(url, clients, seconds, script)
    else:
        rps, lat = asyncio.run(load(url, clients, seconds))
        median, tail, errors = statistics.median(lat), p99(lat), 0
    used = {k: cpu_seconds(p) - before[k] for k, p in procs.items()}
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = rps * seconds
    per_k = {k: v / total * 1000 for k, v in used.items()}
    # The load generator's share of the same 2 cores (not in the servers' total).
    wrk = (after.ru_utime + after.ru_stime - children.ru_utime - children.ru_stime) / total * 1000
    return {"rps": rps, "median": median, "p99": tail, "cpu": per_k, "errors": errors, "wrk": wrk}


# Variants of node-w2 run beside it (--variants): what each setting costs or pays.
VARIANTS = {
    "shared": "reuse_port = false\n",  # one accept queue shared by the workers
    "uvloop": 'event_loop = "uvloop"\n',  # the workers on uvloop
    "asyncio": 'event_loop = "asyncio"\n',  # the workers on asyncio's own loop
}


def worker_spread(url: str) -> dict[str, float]:
    """Invocations answered so far per worker index (edgestate_worker_invocations_total)."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"{url}/metrics", timeout=30) as resp:
        text = resp.read().decode()
    return {
        s.labels["worker"]: s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == "edgestate_worker_invocations_total"
    }


def spread_text(before: dict[str, float], after: dict[str, float]) -> str:
    counts = {k: after.get(k, 0) - before.get(k, 0) for k in sorted(after)}
    total = sum(counts.values()) or 1
    return "/".join(f"{v / total * 100:.0f}" for v in counts.values()) + " %"


def run_round(
    systems: list[tuple[str, str, int]], clients: int, seconds: float, script: Path | None
) -> dict[str, tuple[float, float]]:
    """Each system once at ``clients``, one after the other; prints a row each and
    returns (req/s, total CPU s per 1,000 invocations) by system."""
    results: dict[str, tuple[float, float]] = {}
    for name, url, pid in systems:
        if name == "spawn" and clients > 8:
            continue  # 64 concurrent interpreters would only measure the OOM killer
        workers = name[:6] in ("node-w", "base-w") and name[6] != "0"
        before = worker_spread(url) if workers else {}
        r = measure(url, pid, clients, seconds, script)
        spread = spread_text(before, worker_spread(url)) if workers else ""
        rps = float(r["rps"])  # type: ignore[arg-type]
        cpu = r["cpu"]
        assert isinstance(cpu, dict)
        results[name] = (rps, sum(cpu.values()))
        print(
            f"{clients:>7}  {name:<15} {rps:>9,.0f} {r['median']:>10.2f} {r['p99']:>8.2f} "
            f"{spread:>9}  "
            + " ".join(f"{k} {v:.3f}" for k, v in cpu.items())
            + f"; {sum(cpu.values()):.3f}"
            + (f" (wrk {r['wrk']:.3f})" if script is not None else "")
            + (f"  ({r['errors']} errors)" if r["errors"] else ""),
            flush=True,
        )
    floor_rps = results["floor"][0]
    print(
        f"{'':>7}  vs floor: "
        + ", ".join(f"{k} {v[0] / floor_rps:.2f}x" for k, v in results.items() if k != "floor")
    )
    if "node-w0" in results:
        print(
            f"{'':>7}  vs node-w0: "
            + ", ".join(
                f"{k} {v[0] / results['node-w0'][0]:.2f}x"
                for k, v in results.items()
                if k[:6] in ("node-w", "base-w") and k != "node-w0"
            )
        )
    return results


def summarize(rounds: list[dict[str, tuple[float, float]]], clients: int) -> None:
    """Median and range over the rounds, per system: req/s, x floor, CPU per 1,000."""
    print(f"{clients:>7}  over {len(rounds)} rounds: median [min-max]")
    for name in rounds[0]:
        rps = [r[name][0] for r in rounds]
        ratio = [r[name][0] / r["floor"][0] for r in rounds]
        cpu = [r[name][1] for r in rounds]
        print(
            f"{'':>7}  {name:<15} req/s {statistics.median(rps):>7,.0f} "
            f"[{min(rps):,.0f}-{max(rps):,.0f}]  x floor {statistics.median(ratio):.2f} "
            f"[{min(ratio):.2f}-{max(ratio):.2f}]  cpu/1000 {statistics.median(cpu):.3f} "
            f"[{min(cpu):.3f}-{max(cpu):.3f}]"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--workers", default="0,1,2", help="api.workers values to run")
    parser.add_argument("--no-spawn", action="store_true", help="skip the process-per-request one")
    parser.add_argument(
        "--variants",
        # node-w2 itself is on uvloop when it is installed (api.event_loop = auto)
        default="shared,asyncio",
        help=f"node-w2 variants to run beside it ({', '.join(VARIANTS)}; '' for none)",
    )
    parser.add_argument(
        "--skeleton",
        default="w2,w2-wasm",
        help="worker-design lower bounds (bench_skeleton.py): w2, w2-wasm, w2-arun; '' none",
    )
    parser.add_argument("--clients", default="1,8,64", help="concurrent clients to run")
    parser.add_argument(
        "--rounds", type=int, default=1, help="repeat each client count (systems interleaved)"
    )
    parser.add_argument(
        "--base",
        default="",
        help="another source tree (e.g. a `git archive` of main): its node-wN run beside "
        "this tree's, as base-wN, for before/after side by side in one run",
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME:K=V[,K=V]",
        help="a node-w2 variant run with this environment (repeatable)",
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="edgestate-bench-node-"))
    script: Path | None = None
    if shutil.which("wrk"):
        script = work / "post.lua"
        script.write_text(WRK_SCRIPT)
    procs: list[subprocess.Popen[bytes] | subprocess.Popen[str]] = []
    try:
        systems: list[tuple[str, str, int]] = []
        for n in (int(w) for w in args.workers.split(",")):
            node, node_url = start_node(work, n)
            procs.append(node)
            systems.append((f"node-w{n}", node_url, node.pid))
            if args.base:
                base = str(Path(args.base).resolve())
                node, node_url = start_node(
                    work, n, label="-base", env={"PYTHONPATH": base, "PYTHONSAFEPATH": "1"}
                )
                procs.append(node)
                systems.append((f"base-w{n}", node_url, node.pid))
        for spec in args.env:
            name, _, pairs = spec.partition(":")
            extra = dict(pair.split("=", 1) for pair in pairs.split(",") if pair)
            node, node_url = start_node(work, 2, label=f"-{name}", env=extra)
            procs.append(node)
            systems.append((f"node-w2-{name}", node_url, node.pid))
        for variant in filter(None, args.variants.split(",")):
            if variant == "uvloop" and importlib.util.find_spec("uvloop") is None:
                print("(uvloop is not installed: no node-w2-uvloop)")
                continue
            node, node_url = start_node(work, 2, api=VARIANTS[variant], label=variant)
            procs.append(node)
            systems.append((f"node-w2-{variant}", node_url, node.pid))
        floor, floor_url = start_script(FLOOR_SERVER, work / "floor")
        procs.append(floor)
        systems.append(("floor", floor_url, floor.pid))
        for kind in filter(None, args.skeleton.split(",")):
            mode = {"w2": (), "w2-wasm": ("--wasm",), "w2-arun": ("--arun",)}[kind]
            skeleton, skeleton_url = start_script(SKELETON, work / f"skeleton-{kind}", *mode)
            procs.append(skeleton)
            systems.append((f"skeleton-{kind}", skeleton_url, skeleton.pid))
        if not args.no_spawn:
            spawn, spawn_url = start_script(SPAWN_SERVER, work / "spawn")
            procs.append(spawn)
            systems.append(("spawn", spawn_url, spawn.pid))
        print(f"load generator: {'wrk (1 thread)' if script else 'aiohttp, in this process'}")
        print(
            "idle RSS MB: "
            + "; ".join(
                f"{name}: " + ", ".join(f"{k} {rss_mb(p):.0f}" for k, p in processes(pid).items())
                for name, _, pid in systems
                if name[:6] in ("node-w", "base-w")
            )
        )
        print(
            f"{'clients':>7}  {'system':<15} {'req/s':>9} {'median ms':>10} {'p99 ms':>8} "
            f"{'spread':>9}  cpu s / 1000 inv (per process; total)"
        )
        for clients in (int(c) for c in args.clients.split(",")):
            rounds: list[dict[str, tuple[float, float]]] = []
            for _ in range(args.rounds):
                rounds.append(run_round(systems, clients, args.seconds, script))
            if args.rounds > 1:
                summarize(rounds, clients)
        print(
            "loaded RSS MB: "
            + "; ".join(
                f"{name}: " + ", ".join(f"{k} {rss_mb(p):.0f}" for k, p in processes(pid).items())
                for name, _, pid in systems
                if name[:6] in ("node-w", "base-w")
            )
        )
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(work, ignore_errors=True)
    print(f"(cpu: {os.cpu_count()} cores; load generator and servers share them)")


if __name__ == "__main__":
    main()
