"""Benchmark the bounded mesh against the full mesh, side by side in one run.

    .venv/bin/python scripts/bench_mesh.py [--nodes 30,60] [--max-peers 8] [--quick]

For each cluster size N, both topologies run the same workload on N nodes
spread over ``--procs`` worker processes (each node its own LMDB store in a
temp dir and its own SyncDaemon serving real WebSockets on 127.0.0.1; a 60-node
full mesh in one asyncio loop did not get one write to every node in 120 s on
this machine). Insecure mode: a full mesh at 60 nodes is 1,770 links, and their
TLS handshakes would be measured instead of sync. Nodes know each other's
address and node id as mDNS would tell them on a LAN (mDNS itself is off).
Visibility times are ``time.monotonic_ns()``, one clock for all processes on
Linux.

Measured, per topology and N:

- write-to-visible: one 16-byte write at a time on a random node, from just
  before the write to the moment the last other node committed it (p50, p99);
- updates/s: every node writes its share concurrently; replicated updates per
  second until every node has every one;
- wire bytes per update per receiving node during that flood (WebSocket
  payloads on every link: relays, duplicate copies, peers/reports frames too);
- links per node (mean, max) once settled;
- time to converge after 10% of the nodes restart (stop, 100 writes elsewhere,
  start again on the same data and port): until every node holds every write.

Nothing here touches any address but 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import multiprocessing as mp
import random
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run from a checkout without installing the package
    sys.path.insert(0, str(REPO))

from edgestate.store import ChangeEvent, Durability, Set, Store, StoreConfig  # noqa: E402
from edgestate.sync import SyncConfig, SyncDaemon, tls, topology  # noqa: E402

PAYLOAD = b"p" * 16
DOC = "bench"
# Every wait is bounded: a run that cannot converge says so instead of hanging.
WAIT_S = 180.0
# How often the parent asks the workers whether keys arrived (the times
# themselves are taken where the commit happens, not when asked).
POLL_S = 0.02


# --- worker side: some of the nodes, in one process -----------------------------------


class Seen:
    """When each key became visible on one node (called on the writer thread)."""

    def __init__(self) -> None:
        self.at: dict[str, int] = {}
        self.lock = threading.Lock()

    def __call__(self, event: ChangeEvent) -> None:
        now = time.monotonic_ns()
        with self.lock:
            for key in event.keys:
                self.at.setdefault(key, now)


class Node:
    def __init__(self, name: str, root: Path, max_peers: int, certs: Path | None) -> None:
        self.name, self.root, self.max_peers = name, root, max_peers
        # Mutual TLS when the parent issued this node a certificate (--tls).
        self.certs = certs
        self.port = 0
        self.seen = Seen()
        self.peers: list[tuple[str, int, str]] = []  # (name, port, node id)
        self.store: Store | None = None
        self.daemon: SyncDaemon | None = None
        self._unsubscribe: Callable[[], None] | None = None

    async def start(self) -> None:
        store = Store.open(self.root / self.name, StoreConfig(durability=Durability.BATCHED))
        if not store.has_document(DOC):
            store.create_document(DOC)
        self._unsubscribe = store.subscribe(self.seen)
        config = SyncConfig(
            insecure=self.certs is None,
            tls=tls.files_for(self.certs, self.name) if self.certs is not None else None,
            # With TLS a node's id is its certificate's fingerprint.
            node_id=self.name if self.certs is None else None,
            port=self.port,
            mdns=False,
            max_peers=self.max_peers,
            backoff_initial_s=0.05,
            backoff_max_s=1.0,
        )
        daemon = SyncDaemon(store, config)
        await daemon.start()
        assert daemon.port is not None
        self.port = daemon.port
        self.store, self.daemon = store, daemon
        self.dial()

    def dial(self) -> None:
        assert self.daemon is not None
        for name, port, node_id in self.peers:
            if name != self.name:
                self.daemon.add_peer(f"127.0.0.1:{port}", node_id=node_id)

    async def stop(self) -> None:
        if self.daemon is not None:
            await self.daemon.close()
        if self._unsubscribe is not None:
            self._unsubscribe()
        if self.store is not None:
            self.store.close()
        self.store = self.daemon = None

    def missing(self, keys: list[str]) -> int:
        with self.seen.lock:
            return sum(1 for k in keys if k not in self.seen.at)


def worker(
    names: list[str], root: str, max_peers: int, conn: Connection, certs: str | None = None
) -> None:
    logging.basicConfig(level=logging.ERROR)
    asyncio.run(_worker(names, Path(root), max_peers, conn, Path(certs) if certs else None))


async def _worker(
    names: list[str], root: Path, max_peers: int, conn: Connection, certs: Path | None
) -> None:
    nodes = {
        name: Node(name, root, max_peers, certs / name if certs is not None else None)
        for name in names
    }
    loop = asyncio.get_running_loop()
    inbox: asyncio.Queue[Any] = asyncio.Queue()
    threading.Thread(
        target=lambda: [
            loop.call_soon_threadsafe(inbox.put_nowait, m) for m in iter(conn.recv, None)
        ],
        daemon=True,
    ).start()
    try:
        while True:
            cmd, *arg = await inbox.get()
            reply: Any = None
            if cmd == "start":
                for node in nodes.values():
                    await node.start()
                reply = {
                    n.name: (n.port, n.daemon.node_id if n.daemon else "") for n in nodes.values()
                }
            elif cmd == "peers":
                for node in nodes.values():
                    node.peers = arg[0]
                    node.dial()
            elif cmd == "links":
                reply = {n.name: sorted(n.daemon.connected()) for n in nodes.values() if n.daemon}
            elif cmd == "write":
                node = nodes[arg[0]]
                assert node.store is not None
                reply = time.monotonic_ns()
                await node.store.abatch([Set(DOC, arg[1], PAYLOAD)])
            elif cmd == "flood":

                async def share(node: Node, count: int = arg[0]) -> None:
                    assert node.store is not None
                    for i in range(count):
                        await node.store.abatch([Set(DOC, f"flood-{node.name}-{i}", PAYLOAD)])

                await asyncio.gather(*(share(n) for n in nodes.values()))
            elif cmd == "missing":
                reply = sum(n.missing(arg[0]) for n in nodes.values() if n.daemon)
            elif cmd == "seen":
                reply = {n.name: n.seen.at.get(arg[0]) for n in nodes.values()}
            elif cmd == "bytes":
                live = [n.daemon.stats for n in nodes.values() if n.daemon]
                reply = (sum(s.bytes_out for s in live), sum(s.updates_pushed for s in live))
            elif cmd == "stop":
                for name in arg[0]:
                    await nodes[name].stop()
            elif cmd == "restart":
                for name in arg[0]:
                    nodes[name].seen = Seen()  # visible again = committed after the restart
                    await nodes[name].start()
            elif cmd == "check":
                for name in arg[1]:
                    store = nodes[name].store
                    assert store is not None
                    assert all(store.get(DOC, k) == PAYLOAD for k in arg[0])
            elif cmd == "exit":
                break
            conn.send(reply)
    finally:
        await asyncio.gather(*(n.stop() for n in nodes.values()), return_exceptions=True)
        conn.send("bye")


# --- parent side ------------------------------------------------------------------------


class Workers:
    def __init__(
        self, n: int, procs: int, root: Path, max_peers: int, certs: Path | None = None
    ) -> None:
        ctx = mp.get_context("spawn")
        self.names = [f"n{i:03d}" for i in range(n)]
        self.name_of: dict[str, str] = {}  # node id -> name (ids are fingerprints with TLS)
        self.owner: dict[str, int] = {}
        self.pipes: list[Connection] = []
        self.procs: list[Any] = []
        for w in range(procs):
            mine = self.names[w::procs]
            for name in mine:
                self.owner[name] = w
            parent, child = ctx.Pipe()
            proc = ctx.Process(
                target=worker,
                args=(mine, str(root), max_peers, child, str(certs) if certs else None),
                daemon=True,
            )
            proc.start()
            self.pipes.append(parent)
            self.procs.append(proc)

    def call(self, w: int, *cmd: Any) -> Any:
        self.pipes[w].send(cmd)
        if not self.pipes[w].poll(WAIT_S):
            raise TimeoutError(f"worker {w} did not answer {cmd[0]} in {WAIT_S:.0f} s")
        return self.pipes[w].recv()

    def all(self, *cmd: Any) -> list[Any]:
        for pipe in self.pipes:
            pipe.send(cmd)
        out = []
        for w, pipe in enumerate(self.pipes):
            if not pipe.poll(WAIT_S):
                raise TimeoutError(f"worker {w} did not answer {cmd[0]} in {WAIT_S:.0f} s")
            out.append(pipe.recv())
        return out

    def links(self) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for part in self.all("links"):
            out.update({k: {self.name_of.get(i, i) for i in v} for k, v in part.items()})
        return out

    def until_everywhere(self, keys: list[str], what: str) -> None:
        deadline = time.monotonic() + WAIT_S
        while sum(self.all("missing", keys)):
            if time.monotonic() > deadline:
                raise TimeoutError(f"not reached in {WAIT_S:.0f} s: {what}")
            time.sleep(POLL_S)

    def close(self) -> None:
        for pipe in self.pipes:
            with contextlib.suppress(OSError):
                pipe.send(("exit",))
        for pipe, proc in zip(self.pipes, self.procs, strict=True):
            with contextlib.suppress(OSError, EOFError):
                if pipe.poll(60):
                    pipe.recv()  # "bye": its nodes are stopped
            proc.join(10)
            if proc.is_alive():
                proc.kill()
                proc.join()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def issue_certs(names: list[str], work: Path) -> Path:
    """A cluster CA and one certificate per node under ``work`` (for --tls)."""
    tls.init_cluster(work / "ca")
    for name in names:
        tls.issue_node(work / "ca", name, work / "certs" / name)
    return work / "certs"


def run(n: int, max_peers: int, args: argparse.Namespace, work: Path) -> dict[str, float]:
    """One topology at one size; ``args``: procs, writes, flood, restart_writes, tls."""
    rng = random.Random(n * 1000 + max_peers)
    names = [f"n{i:03d}" for i in range(n)]
    certs = issue_certs(names, work) if getattr(args, "tls", False) else None
    workers = Workers(n, min(args.procs, n), work, max_peers, certs)
    try:
        ports: dict[str, tuple[int, str]] = {}
        for part in workers.all("start"):
            ports.update(part)
        workers.name_of = {node_id: name for name, (_, node_id) in ports.items()}
        linking = time.monotonic()
        workers.all("peers", sorted((name, port, i) for name, (port, i) in ports.items()))
        full = max_peers == 0 or n - 1 <= max_peers

        def settled() -> bool:
            graph = workers.links()
            if full:
                return all(len(v) == n - 1 for v in graph.values())
            return len(graph) == n and all(graph.values()) and topology.connected(graph)

        deadline = time.monotonic() + WAIT_S
        while not settled():
            if time.monotonic() > deadline:
                raise TimeoutError("links did not come up")
            time.sleep(0.1)
        # From the first dial to every link up: with --tls, handshakes included.
        links_up_s = time.monotonic() - linking
        time.sleep(2.0)  # let refusals, duplicates and catch-up handshakes finish
        degrees = [len(v) for v in workers.links().values()]

        # Write-to-visible, one write at a time.
        latencies: list[float] = []
        for i in range(args.writes):
            key = f"lat-{i}"
            writer = rng.choice(workers.names)
            t0 = workers.call(workers.owner[writer], "write", writer, key)
            workers.until_everywhere([key], key)
            seen: dict[str, int] = {}
            for part in workers.all("seen", key):
                seen.update(part)
            latencies.append(max(t for name, t in seen.items() if name != writer) - t0)

        # Sustained rate, and the bytes it took.
        before = [sum(x) for x in zip(*workers.all("bytes"), strict=True)]
        flood = [f"flood-{name}-{i}" for name in workers.names for i in range(args.flood)]
        t0 = time.monotonic()
        workers.all("flood", args.flood)
        workers.until_everywhere(flood, "flood everywhere")
        elapsed = time.monotonic() - t0
        after = [sum(x) for x in zip(*workers.all("bytes"), strict=True)]
        wire, copies = after[0] - before[0], after[1] - before[1]

        # 10% of the nodes restart; the rest write while they are down.
        down = rng.sample(workers.names[1:], max(1, n // 10))
        by_worker: dict[int, list[str]] = {}
        for name in down:
            by_worker.setdefault(workers.owner[name], []).append(name)
        for w, names in by_worker.items():
            workers.call(w, "stop", names)
        up = [name for name in workers.names if name not in down]
        missed = [f"restart-{i}" for i in range(args.restart_writes)]
        for i, key in enumerate(missed):
            writer = up[i % len(up)]
            workers.call(workers.owner[writer], "write", writer, key)
        t0 = time.monotonic()
        for w, names in by_worker.items():
            workers.call(w, "restart", names)
        workers.until_everywhere(missed, "restarted nodes caught up")
        restart_s = time.monotonic() - t0
        for w, names in by_worker.items():
            workers.call(w, "check", missed, names)  # on disk, not only seen
        return {
            "p50_ms": statistics.median(latencies) / 1e6,
            "p99_ms": pct(latencies, 0.99) / 1e6,
            "updates_s": len(flood) / elapsed,
            "bytes_per_update_per_receiver": wire / (len(flood) * (n - 1)),
            # Update copies pushed per receiving node: 1 is no duplicate at all.
            "copies_per_receiver": copies / (len(flood) * (n - 1)),
            "links_mean": statistics.mean(degrees),
            "links_max": max(degrees),
            "restart_s": restart_s,
            "links_up_s": links_up_s,
        }
    finally:
        workers.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", default="30,60")
    parser.add_argument("--max-peers", type=int, default=8)
    parser.add_argument("--procs", type=int, default=6, help="worker processes")
    parser.add_argument("--quick", action="store_true", help="fewer writes (a smoke run)")
    parser.add_argument("--tls", action="store_true", help="mutual TLS (a certificate per node)")
    args = parser.parse_args()
    args.writes = 40 if args.quick else 200
    args.flood = 10 if args.quick else 50
    args.restart_writes = 100
    sizes = [int(s) for s in args.nodes.split(",")]
    print(
        f"bounded mesh vs full mesh: {args.procs} worker processes, "
        f"{'mutual TLS' if args.tls else 'insecure'}, loopback; "
        f"max_peers={args.max_peers}; {args.writes} latency writes, "
        f"{args.flood} flood writes per node, {args.restart_writes} writes while 10% are down"
    )
    print(
        f"{'N':>3} {'mesh':<8} {'p50 ms':>8} {'p99 ms':>8} {'upd/s':>8} "
        f"{'B/upd/rcv':>10} {'copies':>7} {'links':>11} {'restart s':>10} {'links up s':>10}"
    )
    for n in sizes:
        for label, max_peers in (("full", 0), (f"bound{args.max_peers}", args.max_peers)):
            with tempfile.TemporaryDirectory(prefix="bench-mesh-") as tmp:
                try:
                    r = run(n, max_peers, args, Path(tmp))
                except TimeoutError as exc:
                    print(f"{n:>3} {label:<8} did not finish: {exc}", flush=True)
                    continue
            print(
                f"{n:>3} {label:<8} {r['p50_ms']:>8.1f} {r['p99_ms']:>8.1f} "
                f"{r['updates_s']:>8.0f} {r['bytes_per_update_per_receiver']:>10.1f} "
                f"{r['copies_per_receiver']:>7.2f} "
                f"{r['links_mean']:>5.1f}/{r['links_max']:<5.0f} {r['restart_s']:>10.2f} "
                f"{r['links_up_s']:>10.2f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
