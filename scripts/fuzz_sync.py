"""A longer sync-frame fuzz campaign against a real `edgestate node` process.

Same generator as tests/sync/test_frame_fuzz.py (edgestate.devkit.frame_fuzz),
insecure dev mode on 127.0.0.1 only. Prints cases per category, close codes,
crashes (the node must still answer /healthz and replicate to a second node),
/healthz latency sampled during the campaign and the node's RSS before/after.

    PYTHONPATH=. python scripts/fuzz_sync.py --cases 5000 --seconds 120 --seed 1
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import tempfile
import time
import urllib.request
from pathlib import Path

from edgestate.client import NodeClient
from edgestate.devkit import spawn_node
from edgestate.devkit.frame_fuzz import FrameFuzzer, FuzzLimits
from edgestate.devkit.fuzz_client import Tally, run_cases
from edgestate.errors import NodeAPIError

FUZZ = FuzzLimits()


def _config(path: Path, name: str, peers: list[str]) -> Path:
    listed = ", ".join(f'"{p}"' for p in peers)
    path.write_text(
        f'[sync]\nnode_id = "{name}"\nmdns = false\nstatic_peers = [{listed}]\n'
        f"backoff_max_s = 0.5\n[sync.limits]\nmax_frame_bytes = {FUZZ.max_frame_bytes}\n"
        f"max_diff_frame_bytes = {FUZZ.max_diff_frame_bytes}\n"
        f"max_documents_per_frame = {FUZZ.max_documents_per_frame}\n"
    )
    return path


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return -1


def _healthz(api: str) -> float:
    start = time.perf_counter()
    with urllib.request.urlopen(f"{api}/healthz", timeout=10) as response:
        response.read()
    return time.perf_counter() - start


CHECK_DOC = "fuzz-check"
# How long a write may take to reach the other node before the campaign calls the
# node broken: generous, a loaded machine included.
REPLICATION_WAIT_S = 30.0


async def _replicates(a: NodeClient, b: NodeClient, key: str) -> bool:
    """Write ``key`` on ``a`` through its API and wait for ``b`` to hold it."""
    await asyncio.to_thread(a.put, CHECK_DOC, key, key.encode(), create=True)
    deadline = time.monotonic() + REPLICATION_WAIT_S
    while time.monotonic() < deadline:
        try:
            if (await asyncio.to_thread(b.get, CHECK_DOC, key))["text"] == key:
                return True
        except NodeAPIError:  # the document has not reached b yet
            pass
        await asyncio.sleep(0.05)
    return False


async def _sample(api: str, out: list[float], stop: asyncio.Event) -> None:
    while not stop.is_set():
        out.append(await asyncio.to_thread(_healthz, api))
        await asyncio.sleep(0.05)


async def campaign(args: argparse.Namespace, tmp: Path) -> int:
    procs = []
    try:
        a_dir, b_dir = tmp / "a", tmp / "b"
        a_dir.mkdir()
        b_dir.mkdir()
        common = ["--api-port", "0", "--sync-port", "0"]
        proc_a, info_a = spawn_node(
            ["--data", str(a_dir), *common, "--config", str(_config(tmp / "a.toml", "a", []))],
            a_dir / "ready.json",
            a_dir / "node.log",
            env=dict(os.environ),
        )
        procs.append(proc_a)
        peer = [f"127.0.0.1:{info_a['sync_port']}"]
        proc_b, info_b = spawn_node(
            ["--data", str(b_dir), *common, "--config", str(_config(tmp / "b.toml", "b", peer))],
            b_dir / "ready.json",
            b_dir / "node.log",
            env=dict(os.environ),
        )
        procs.append(proc_b)
        a = NodeClient(info_a["api"], (a_dir / "admin.token").read_text().strip())
        b = NodeClient(info_b["api"], (b_dir / "admin.token").read_text().strip())
        if not await _replicates(a, b, "before"):
            raise SystemExit("the two nodes do not replicate before the campaign: see node.log")
        rss_before = _rss_kib(proc_a.pid)
        latencies: list[float] = []
        stop = asyncio.Event()
        sampler = asyncio.ensure_future(_sample(info_a["api"], latencies, stop))
        tally = Tally()
        started = time.monotonic()
        try:
            cases = FrameFuzzer(random.Random(args.seed), FUZZ).cases()
            await run_cases(
                cases,
                "127.0.0.1",
                info_a["sync_port"],
                count=args.cases,
                seconds=args.seconds,
                tally=tally,
            )
        finally:
            stop.set()
            await sampler
        elapsed = time.monotonic() - started
        rss_after = _rss_kib(proc_a.pid)
        replicated = await _replicates(a, b, "after") and all(
            c.get(CHECK_DOC, "before")["text"] == "before" for c in (a, b)
        )
        alive = proc_a.poll() is None and _healthz(info_a["api"]) < 10
        crashes = int(not alive) + int(not replicated) + len(tally.failures)
        print(f"seed {args.seed}: {sum(tally.categories.values())} cases in {elapsed:.1f} s")
        for name, count in sorted(tally.categories.items()):
            print(f"  {name:32} {count}")
        print("close codes:", dict(sorted(tally.close_codes.items())))
        print(
            f"crashes: {crashes} (alive {alive}, replicates {replicated}, "
            f"unexpected outcomes {len(tally.failures)})"
        )
        q = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [0.0] * 99
        print(
            f"/healthz latency ({len(latencies)} samples): p50 {q[49] * 1e3:.1f} ms, "
            f"p99 {q[98] * 1e3:.1f} ms, max {max(latencies, default=0) * 1e3:.1f} ms"
        )
        print(f"node RSS: {rss_before} KiB before, {rss_after} KiB after")
        for f in tally.failures[:10]:
            print("  unexpected:", f.case.category, f.case.phase, f.close_code, f.case.data[:60])
        return 1 if crashes else 0
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=int(os.environ.get("EDGESTATE_FUZZ_SEED", "1")))
    parser.add_argument("--seconds", type=float, default=120.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        return asyncio.run(campaign(args, Path(tmp)))


if __name__ == "__main__":
    raise SystemExit(main())
