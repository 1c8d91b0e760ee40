"""Benchmark peer sync on loopback, side by side with pycrdt-websocket.

    .venv/bin/python scripts/bench_sync.py [--nodes 2,3,5,10] [--quick] [--durability sync]

For each cluster size N, both systems run with one OS process per node (or per
client, plus one server process for pycrdt-websocket), on 127.0.0.1 only:

- edgestate: N nodes (store + SyncDaemon, mutual TLS), a full mesh of static peers.
- pycrdt-websocket: one WebsocketServer room behind aiohttp, N pycrdt Doc clients
  (Provider over aiohttp WebSockets), the same root map and the same writes.

Measured, per system and N:

- write-to-visible-everywhere latency: one 16-byte write at a time on node 0,
  from just before the write call to the moment the last other node has
  committed it (edgestate: its durable commit; pycrdt: its observer fired);
  monotonic clock, shared by all processes on Linux.
- sustained replicated updates/s: every node writes its share concurrently; the
  rate at which updates become visible on every node.
- catch-up: node N-1 disconnects, node 0 writes 100k keys (in commits of 1,000),
  node N-1 reconnects; time until it has all of them, and the bytes it received
  against the size of the updates it missed.
- bytes on the wire per update (WebSocket message payloads on every link,
  counting relays) against the 16-byte payload.

The baseline keeps documents in memory only; edgestate commits to LMDB (the
durability mode is printed). Nothing here touches any address but 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing as mp
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run from a checkout without installing the package
    sys.path.insert(0, str(REPO))

from bench_sync_baseline import (  # noqa: E402
    baseline_client,
    baseline_server,
    pycrdt_websocket_version,
)
from bench_sync_common import (  # noqa: E402
    CATCHUP_BATCH,
    CATCHUP_KEYS,
    PAYLOAD,
    Observer,
    serve_commands,
)

# --- child side: one edgestate node (the baseline's: bench_sync_baseline) -------------


def edgestate_node(
    idx: int, work: str, ca_dir: str, durability: str, insecure: bool, conn: Connection
) -> None:
    from edgestate.cli.node_cmds import SWITCH_INTERVAL_S

    # The GIL switch interval `edgestate node` sets (see edgestate.cli.node_cmds).
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    asyncio.run(_edgestate_node(idx, Path(work), Path(ca_dir), durability, insecure, conn))


async def _edgestate_node(
    idx: int, work: Path, ca_dir: Path, durability: str, insecure: bool, conn: Connection
) -> None:
    from edgestate.store import Durability, Set, Store, StoreConfig
    from edgestate.sync import tls
    from edgestate.sync.config import SyncConfig
    from edgestate.sync.daemon import SyncDaemon

    name = f"n{idx}"
    tls.issue_node(ca_dir, name, work / name)
    store = Store.open(work / f"{name}-data", StoreConfig(durability=Durability(durability)))
    store.create_document("bench")
    obs = Observer(conn, idx)
    store.subscribe(lambda ev: obs.saw(ev.keys, len(ev.update), ev.origin is None))
    config = SyncConfig(
        port=0,
        tls=None if insecure else tls.files_for(work / name, name),
        insecure=insecure,
        mdns=False,
        anti_entropy_s=3600.0,
    )
    state: dict[str, Any] = {"daemon": SyncDaemon(store, config), "peers": []}
    await state["daemon"].start()
    port = state["daemon"].port

    async def handle(cmd: tuple[Any, ...]) -> Any:
        daemon: SyncDaemon = state["daemon"]
        kind = cmd[0]
        if kind == "port":
            return port
        if kind == "peers":
            state["peers"] = cmd[1]
            for p in cmd[1]:
                daemon.add_peer(f"127.0.0.1:{p}")
            return None
        if kind == "wait_connected":
            async with asyncio.timeout(30):
                await daemon.wait_connected(cmd[1])
            return None
        if kind == "write":
            t0 = time.monotonic_ns()
            await store.abatch([Set("bench", cmd[1], PAYLOAD)])
            return t0
        if kind == "flood":
            prefix, count, window = cmd[1], cmd[2], cmd[3]
            sem = asyncio.Semaphore(window)

            async def one(i: int) -> None:
                async with sem:
                    await store.abatch([Set("bench", f"{prefix}-{idx}-{i}", PAYLOAD)])

            await asyncio.gather(*(one(i) for i in range(count)))
            return None
        if kind == "bulk":
            before = obs.local_update_bytes
            for start in range(0, cmd[2], CATCHUP_BATCH):
                await store.abatch(
                    [
                        Set("bench", f"{cmd[1]}-{i}", PAYLOAD)
                        for i in range(start, min(cmd[2], start + CATCHUP_BATCH))
                    ]
                )
            return obs.local_update_bytes - before
        if kind == "count":
            return obs.counts.get(cmd[1], 0)
        if kind == "times":
            return {k: obs.seen.get(k) for k in cmd[1]}
        if kind == "bytes":
            return daemon.stats.bytes_out, daemon.stats.bytes_in
        if kind == "stop_sync":
            await daemon.close()
            return None
        if kind == "start_sync":
            fresh = SyncDaemon(store, config)
            await fresh.start()
            state["daemon"] = fresh
            for p in state["peers"]:
                fresh.add_peer(f"127.0.0.1:{p}")
            return None
        raise ValueError(kind)

    try:
        await serve_commands(conn, handle)
    finally:
        await state["daemon"].close()
        store.close()


# --- coordinator -------------------------------------------------------------------


class Child:
    """One child process and its command pipe."""

    def __init__(self, target: Callable[..., None], *args: Any) -> None:
        ctx = mp.get_context("spawn")
        self.conn, child_end = ctx.Pipe()
        self.proc = ctx.Process(target=target, args=(*args, child_end), daemon=True)
        self.proc.start()
        self.pending: list[Any] = []

    def call(self, *cmd: Any, timeout: float = 600.0) -> Any:
        self.conn.send(cmd)
        return self.expect(cmd[0], timeout)

    def expect(self, kind: str, timeout: float = 600.0) -> Any:
        for i, msg in enumerate(self.pending):
            if msg[0] == kind:
                return self.pending.pop(i)[1:] if kind == "seen" else self.pending.pop(i)[1]
        deadline = time.monotonic() + timeout
        while True:
            if not self.conn.poll(max(0.0, deadline - time.monotonic())):
                raise TimeoutError(f"child gave no {kind!r} in time")
            msg = self.conn.recv()
            if msg[0] == kind:
                return msg[1:] if kind == "seen" else msg[1]
            self.pending.append(msg)

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.send(("exit",))
        self.proc.join(15)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()


def wait_counts(children: list[Child], prefix: str, target: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        counts = [c.call("count", prefix) for c in children]
        if all(n >= target for n in counts):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{prefix}: counts {counts}, wanted {target}")
        time.sleep(0.005)


def total_bytes(system: str, children: list[Child], server: Child | None) -> int:
    if system == "edgestate":
        return int(sum(c.call("bytes")[0] for c in children))
    assert server is not None
    sent, received = server.call("bytes")
    return int(sent + received)


def run(system: str, n: int, args: argparse.Namespace, work: Path) -> dict[str, float]:
    server: Child | None = None
    children: list[Child] = []
    try:
        if system == "edgestate":
            from edgestate.sync import tls

            ca = work / "ca"
            if not ca.exists():
                tls.init_cluster(ca)
            children = [
                Child(edgestate_node, i, str(work), str(ca), args.durability, args.insecure)
                for i in range(n)
            ]
            ports = [c.call("port", timeout=60) for c in children]
            for i, c in enumerate(children):
                c.call("peers", ports[:i])
            for c in children:
                c.call("wait_connected", n - 1, timeout=60)
        else:
            server = Child(baseline_server)
            port = server.call("port", timeout=60)
            # One at a time: pycrdt-websocket races ("YRoom already running") when
            # the first clients of a room connect at once.
            for i in range(n):
                children.append(Child(baseline_client, i, port))
                children[-1].call("ready", timeout=60)

        # Latency: one write at a time on node 0, until visible everywhere.
        lat: list[float] = []
        for i in range(args.latency_samples):
            key = f"lat-{i}"
            children[0].conn.send(("write", key))
            t0 = children[0].expect("write")
            arrivals = [c.expect("seen")[2] for c in children[1:]]
            lat.append((max(arrivals) - t0) / 1e6)
        lat.sort()

        # Throughput: everybody writes concurrently.
        per_node = args.updates // n
        before = total_bytes(system, children, server)
        start = time.monotonic()
        for c in children:
            c.conn.send(("flood", "tp", per_node, 64))
        for c in children:
            c.expect("flood", timeout=600)
        wait_counts(children, "tp", per_node * n, timeout=600)
        elapsed = time.monotonic() - start
        wire = total_bytes(system, children, server) - before

        # Catch-up after missed writes.
        last = children[-1]
        last.call("stop_sync")
        missed_bytes = children[0].call("bulk", "cu", CATCHUP_KEYS)
        received_before = last.call("bytes")[1] if system == "pycrdt" else 0
        start = time.monotonic()
        last.call("start_sync")
        wait_counts([last], "cu", CATCHUP_KEYS, timeout=600)
        catchup = time.monotonic() - start
        received = last.call("bytes")[1] - received_before
        return {
            "lat_median_ms": statistics.median(lat),
            "lat_p99_ms": lat[min(len(lat) - 1, int(len(lat) * 0.99))],
            "updates_per_s": per_node * n / elapsed,
            "wire_bytes_per_update": wire / (per_node * n),
            "catchup_s": catchup,
            "catchup_bytes": received,
            "missed_bytes": missed_bytes,
        }
    finally:
        for c in children:
            c.stop()
        if server is not None:
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", default="2,3,5,10")
    parser.add_argument("--latency-samples", type=int, default=300)
    parser.add_argument("--updates", type=int, default=30_000)
    parser.add_argument("--durability", choices=["sync", "batched"], default="batched")
    parser.add_argument("--systems", default="edgestate,pycrdt")
    parser.add_argument(
        "--insecure", action="store_true", help="edgestate over plain ws, like the baseline"
    )
    parser.add_argument("--quick", action="store_true", help="fewer samples, for a smoke run")
    args = parser.parse_args()
    if args.quick:
        args.latency_samples, args.updates = 50, 3_000
    sizes = [int(x) for x in args.nodes.split(",")]
    systems = args.systems.split(",")
    print(
        f"payload {len(PAYLOAD)} B/update; edgestate durability={args.durability}, "
        f"{'plain ws (insecure mode)' if args.insecure else 'mutual TLS'}; "
        f"pycrdt-websocket {pycrdt_websocket_version()} in memory, plain ws; "
        f"catch-up {CATCHUP_KEYS} keys"
    )
    header = (
        f"{'system':<10} {'N':>3} {'lat med ms':>10} {'lat p99 ms':>10} {'upd/s':>9} "
        f"{'wire B/upd':>10} {'catch-up s':>10} {'catch-up B':>11} {'x missed':>8}"
    )
    print(header)
    with tempfile.TemporaryDirectory(prefix="bench-sync-") as tmp:
        for n in sizes:
            for system in systems:
                work = Path(tmp) / f"{system}-{n}"
                work.mkdir()
                r = run(system, n, args, work)
                ratio = (
                    f"{r['catchup_bytes'] / r['missed_bytes']:.2f}" if r["missed_bytes"] else "-"
                )
                print(
                    f"{system:<10} {n:>3} {r['lat_median_ms']:>10.2f} {r['lat_p99_ms']:>10.2f} "
                    f"{r['updates_per_s']:>9.0f} {r['wire_bytes_per_update']:>10.1f} "
                    f"{r['catchup_s']:>10.2f} {r['catchup_bytes']:>11.0f} {ratio:>8}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
