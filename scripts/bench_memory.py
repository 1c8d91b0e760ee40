#!/usr/bin/env python3
"""Memory of a node and its invocation workers: RSS, PSS and USS, idle and loaded.

RSS counts every page a process maps, shared or not, so N workers' RSS add up to
more than they cost; PSS splits each shared page between its sharers (the sum
over processes is what they cost together) and USS counts only pages no other
process maps (what killing one would free). Read from ``/proc/PID/smaps_rollup``.

Part 1: a real `edgestate node` with ``--workers N`` (default 2, the spare
worker on), kv-echo deployed: each process idle, then after ``--seconds`` of
64-client load (wrk when installed, else aiohttp in this process); and the CPU
each process spends idle (over ``--idle-s``, before and after the load: a small
edge box idles most of the day), from ``/proc/PID/stat``.

Part 2, the fork-server question, side by side in one run: a worker's state
(wasmtime engine, a read-only store, kv-echo loaded) built in K fresh interpreters
against K children forked from one parent that imported the heavy modules first
(what a zygote process would give). Each child's USS and PSS, median.

    .venv/bin/python scripts/bench_memory.py [--workers 2] [--seconds 3] [--forks 2] [--idle-s 5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_node import REPO, WRK_SCRIPT, load, start_node

FIELDS = ("Rss", "Pss", "Private_Clean", "Private_Dirty")


def memory(pid: int) -> dict[str, float]:
    """RSS, PSS and USS of one process, MB."""
    values: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, _, rest = line.partition(":")
        if name in FIELDS:
            values[name] = int(rest.split()[0]) / 1024
    return {
        "rss": values["Rss"],
        "pss": values["Pss"],
        "uss": values["Private_Clean"] + values["Private_Dirty"],
    }


def node_processes(api: str, node_pid: int) -> dict[str, int]:
    text = urllib.request.urlopen(f"{api}/metrics", timeout=10).read().decode()
    out = {"node": node_pid}
    for line in text.splitlines():
        if line.startswith("edgestate_worker_pid{"):
            label = line.split('"')[1]
            out[label] = int(float(line.split()[1]))
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def show_idle_cpu(title: str, procs: dict[str, int], seconds: float) -> None:
    """Each process's CPU while nothing is asked of it, % of one core."""
    before = {name: cpu_seconds(pid) for name, pid in procs.items()}
    time.sleep(seconds)
    used = {name: cpu_seconds(pid) - before[name] for name, pid in procs.items()}
    print(
        f"{title:<8} idle CPU over {seconds:.0f} s, % of a core: "
        + "; ".join(f"{name} {100 * u / seconds:.2f}" for name, u in used.items())
        + f"; total {100 * sum(used.values()) / seconds:.2f}"
    )


def show(title: str, procs: dict[str, int]) -> None:
    rows = {name: memory(pid) for name, pid in procs.items()}
    print(
        f"{title:<8} "
        + "; ".join(
            f"{name} rss {m['rss']:.0f} pss {m['pss']:.0f} uss {m['uss']:.0f}"
            for name, m in rows.items()
        )
        + f"; total pss {sum(m['pss'] for m in rows.values()):.0f} MB"
    )


WORKER_STATE = r"""
def build(store_dir, cache_dir, wasm, manifest, signature, policy):
    from edgestate.runtime import Runtime, RuntimeConfig, TrustPolicy
    from edgestate.store import Store
    store = Store.open(store_dir, readonly=True)
    runtime = Runtime(store, TrustPolicy.load(policy), RuntimeConfig(cache_dir=cache_dir))
    runtime.load(wasm, manifest, signature)
    return store, runtime
"""

CHILD = r"""
import os, sys, json
mode, n, *paths = sys.argv[1:]
HEAVY = ("wasmtime", "aiohttp", "aiohttp.web", "lmdb", "msgpack", "pycrdt",
         "edgestate.node.workers.worker")
def state():
    store_dir, cache_dir, wasm, manifest, signature, policy = paths
    from pathlib import Path
    return build(Path(store_dir), Path(cache_dir), Path(wasm).read_bytes(),
                 Path(manifest).read_bytes(), Path(signature).read_bytes(), Path(policy))
def hold(r, w):
    kept = state()
    os.write(w, b"x")
    os.read(r, 1)  # until the parent has measured
if mode == "fresh":
    import importlib
    for m in HEAVY: importlib.import_module(m)
    r, w = int(os.environ["GO"]), int(os.environ["READY"])
    hold(r, w)
else:
    import importlib
    for m in HEAVY: importlib.import_module(m)
    # No thread, loop, LMDB environment or socket exists yet: fork is safe.
    r, w = int(os.environ["GO"]), int(os.environ["READY"])
    kids = []
    for _ in range(int(n)):
        pid = os.fork()
        if pid == 0:
            hold(r, w)
            os._exit(0)
        kids.append(pid)
    print(" ".join(map(str, kids)), flush=True)
    for k in kids: os.waitpid(k, 0)
"""


def fork_experiment(work: Path, forks: int) -> None:
    from edgestate.devkit import example_bundle, make_publisher
    from edgestate.store import Store

    publisher = make_publisher(work / "fx-publisher")
    bundle = example_bundle("kv_echo", publisher, REPO / "build" / "guest-wasm")
    store_dir = work / "fx-store"
    with Store.open(store_dir) as store:
        store.create_document("kv")
    files = []
    for name, data in (
        ("w.wasm", bundle.wasm),
        ("m.json", bundle.manifest),
        ("s.sig", bundle.signature),
    ):
        (work / name).write_bytes(data)
        files.append(str(work / name))
    cache = work / "fx-cache"
    cache.mkdir()
    args = [str(store_dir), str(cache), *files, str(publisher.policy_path)]
    code = WORKER_STATE + CHILD
    results: dict[str, list[dict[str, float]]] = {}
    for mode in ("fresh", "forked"):
        ready_r, ready_w = os.pipe()  # child -> parent: built
        go_r, go_w = os.pipe()  # parent -> children: measured, exit
        env = {**os.environ, "GO": str(go_r), "READY": str(ready_w)}
        fds = (go_r, ready_w)
        if mode == "fresh":
            procs = [
                subprocess.Popen(
                    [sys.executable, "-c", code, mode, "1", *args], env=env, pass_fds=fds
                )
                for _ in range(forks)
            ]
            pids = [p.pid for p in procs]
        else:
            parent = subprocess.Popen(
                [sys.executable, "-c", code, mode, str(forks), *args],
                env=env,
                pass_fds=fds,
                stdout=subprocess.PIPE,
                text=True,
            )
            assert parent.stdout is not None
            pids = [int(p) for p in parent.stdout.readline().split()]
            procs = [parent]
        for _ in range(forks):
            os.read(ready_r, 1)  # each child built its state
        time.sleep(0.2)
        results[mode] = [memory(p) for p in pids]
        os.write(go_w, b"x" * forks)
        for p in procs:
            p.wait(timeout=60)
        for fd in (ready_r, ready_w, go_r, go_w):
            os.close(fd)
    for mode, rows in results.items():
        print(
            f"  {mode:<7} x{forks}: uss median {statistics.median(m['uss'] for m in rows):.1f} MB, "
            f"pss median {statistics.median(m['pss'] for m in rows):.1f} MB, "
            f"rss median {statistics.median(m['rss'] for m in rows):.1f} MB"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--forks", type=int, default=2)
    parser.add_argument("--idle-s", type=float, default=5.0)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="edgestate-bench-memory-"))
    node, api = start_node(work, args.workers)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            metrics = urllib.request.urlopen(f"{api}/metrics", timeout=10).read().decode()
            if "edgestate_spare_workers_ready 1.0" in metrics:
                break
            time.sleep(0.2)
        print(f"part 1: node with api.workers = {args.workers} (MB)")
        show("idle", node_processes(api, node.pid))
        show_idle_cpu("idle", node_processes(api, node.pid), args.idle_s)
        if shutil.which("wrk"):
            script = work / "post.lua"
            script.write_text(WRK_SCRIPT)
            subprocess.run(
                ["wrk", "-t1", "-c64", f"-d{max(1, round(args.seconds))}s", "-s", str(script), api],
                capture_output=True,
                check=True,
            )
        else:
            import asyncio

            asyncio.run(load(api, 64, args.seconds))
        show("loaded", node_processes(api, node.pid))
        show_idle_cpu("after", node_processes(api, node.pid), args.idle_s)
    finally:
        node.send_signal(signal.SIGTERM)
        node.wait(timeout=30)
    print("part 2: a worker's state (engine, read-only store, kv-echo) per process")
    fork_experiment(work, args.forks)
    shutil.rmtree(work, ignore_errors=True)
    print(f"(cpu: {os.cpu_count()} cores, shared with whatever else runs)")


if __name__ == "__main__":
    main()
