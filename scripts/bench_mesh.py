"""Benchmark the bounded mesh against the full mesh, side by side in one run.

    .venv/bin/python scripts/bench_mesh.py [--nodes 30,60] [--max-peers 8] [--quick]

For each cluster size N, both topologies run the same workload on N in-process
nodes (one asyncio loop; each node its own LMDB store in a temp dir and its own
SyncDaemon serving real WebSockets on 127.0.0.1). Insecure mode: at 60 nodes a
full mesh is 1,770 links, and their TLS handshakes in one process would be
measured instead of sync. Nodes know each other's address and node id as mDNS
would tell them on a LAN (mDNS itself is off).

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
import logging
import random
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run from a checkout without installing the package
    sys.path.insert(0, str(REPO))

from edgestate.store import ChangeEvent, Durability, Set, Store, StoreConfig  # noqa: E402
from edgestate.sync import SyncConfig, SyncDaemon, topology  # noqa: E402
from edgestate.sync.discovery import Found, FoundCallback, LostCallback  # noqa: E402

PAYLOAD = b"p" * 16
DOC = "bench"
# Every wait is bounded: a run that cannot converge says so instead of hanging.
WAIT_S = 120.0


class Directory:
    """What mDNS gives on a LAN: every node learns every other's address and id."""

    def __init__(self) -> None:
        self.entries: dict[str, Found] = {}
        self.listeners: dict[str, FoundCallback] = {}

    def source(self, me: str) -> Source:
        return Source(self, me)

    def publish(self, found: Found) -> None:
        assert found.node_id is not None
        self.entries[found.node_id] = found
        for name, on_found in list(self.listeners.items()):
            if name != found.node_id:
                on_found(found)


class Source:
    def __init__(self, directory: Directory, me: str) -> None:
        self.directory, self.me = directory, me

    async def start(self, on_found: FoundCallback, on_lost: LostCallback) -> None:
        self.directory.listeners[self.me] = on_found
        for name, entry in list(self.directory.entries.items()):
            if name != self.me:
                on_found(entry)

    async def aclose(self) -> None:
        self.directory.listeners.pop(self.me, None)


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
    def __init__(self, name: str, root: Path, directory: Directory, max_peers: int) -> None:
        self.name, self.root, self.directory, self.max_peers = name, root, directory, max_peers
        self.port = 0
        self.seen = Seen()
        self.store: Store | None = None
        self.daemon: SyncDaemon | None = None
        self._unsubscribe: Callable[[], None] | None = None

    async def start(self) -> None:
        store = Store.open(self.root / self.name, StoreConfig(durability=Durability.BATCHED))
        if not store.has_document(DOC):
            store.create_document(DOC)
        self._unsubscribe = store.subscribe(self.seen)
        config = SyncConfig(
            insecure=True,
            node_id=self.name,
            port=self.port,
            mdns=False,
            max_peers=self.max_peers,
            backoff_initial_s=0.05,
            backoff_max_s=1.0,
        )
        daemon = SyncDaemon(store, config, discovery=[self.directory.source(self.name)])
        await daemon.start()
        assert daemon.port is not None
        self.port = daemon.port
        self.store, self.daemon = store, daemon
        self.directory.publish(Found("127.0.0.1", self.port, "mdns", self.name))

    async def stop(self) -> None:
        if self.daemon is not None:
            await self.daemon.close()
        if self._unsubscribe is not None:
            self._unsubscribe()
        if self.store is not None:
            self.store.close()
        self.store = self.daemon = None

    def has(self, keys: list[str]) -> bool:
        with self.seen.lock:
            return all(k in self.seen.at for k in keys)


async def until(check: Callable[[], bool], what: str, seconds: float = WAIT_S) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"not reached in {seconds:.0f} s: {what}")
        await asyncio.sleep(0.005)


def everywhere(nodes: list[Node], keys: list[str]) -> Callable[[], bool]:
    return lambda: all(node.has(keys) for node in nodes)


def links(nodes: list[Node]) -> dict[str, set[str]]:
    return {n.name: set(n.daemon.connected()) for n in nodes if n.daemon is not None}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run(n: int, max_peers: int, args: argparse.Namespace, work: Path) -> dict[str, float]:
    directory = Directory()
    nodes = [Node(f"n{i:03d}", work, directory, max_peers) for i in range(n)]
    rng = random.Random(n * 1000 + max_peers)
    try:
        for node in nodes:
            await node.start()
        full = max_peers == 0 or n - 1 <= max_peers

        def settled() -> bool:
            graph = links(nodes)
            if full:
                return all(len(v) == n - 1 for v in graph.values())
            return all(graph.values()) and topology.connected(graph)

        await until(settled, "links up")
        await asyncio.sleep(1.0)  # let refusals and handshakes finish
        await until(settled, "links settled")
        degrees = [len(v) for v in links(nodes).values()]

        # Write-to-visible, one write at a time.
        latencies: list[float] = []
        for i in range(args.writes):
            key = f"lat-{i}"
            writer = rng.choice(nodes)
            assert writer.store is not None
            t0 = time.monotonic_ns()
            await writer.store.abatch([Set(DOC, key, PAYLOAD)])
            others = [o for o in nodes if o is not writer]
            await until(everywhere(others, [key]), key)
            latencies.append(max(o.seen.at[key] for o in others) - t0)

        # Sustained rate, and the bytes it took.
        before = sum(node.daemon.stats.bytes_out for node in nodes if node.daemon)
        flood = [f"flood-{node.name}-{i}" for node in nodes for i in range(args.flood)]
        t0 = time.monotonic()

        async def write_share(node: Node) -> None:
            assert node.store is not None
            for i in range(args.flood):
                await node.store.abatch([Set(DOC, f"flood-{node.name}-{i}", PAYLOAD)])

        await asyncio.gather(*(write_share(node) for node in nodes))
        await until(everywhere(nodes, flood), "flood everywhere")
        elapsed = time.monotonic() - t0
        wire = sum(node.daemon.stats.bytes_out for node in nodes if node.daemon) - before

        # 10% of the nodes restart; the rest write while they are down.
        down = rng.sample(nodes[1:], max(1, n // 10))
        for node in down:
            await node.stop()
        up = [node for node in nodes if node not in down]
        missed = [f"restart-{i}" for i in range(args.restart_writes)]
        for i, key in enumerate(missed):
            writer = up[i % len(up)]
            assert writer.store is not None
            await writer.store.abatch([Set(DOC, key, PAYLOAD)])
        t0 = time.monotonic()
        for node in down:
            node.seen = Seen()  # visible again = committed again after the restart
            await node.start()
        await until(everywhere(nodes, missed), "restarted nodes caught up")
        # The restarted nodes read what they had from disk: check the store too.
        for node in down:
            assert node.store is not None
            assert all(node.store.get(DOC, k) == PAYLOAD for k in missed)
        restart_s = time.monotonic() - t0
        return {
            "p50_ms": statistics.median(latencies) / 1e6,
            "p99_ms": pct(latencies, 0.99) / 1e6,
            "updates_s": len(flood) / elapsed,
            "bytes_per_update_per_receiver": wire / (len(flood) * (n - 1)),
            "links_mean": statistics.mean(degrees),
            "links_max": max(degrees),
            "restart_s": restart_s,
        }
    finally:
        await asyncio.gather(*(node.stop() for node in nodes), return_exceptions=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", default="30,60")
    parser.add_argument("--max-peers", type=int, default=8)
    parser.add_argument("--quick", action="store_true", help="fewer writes (a smoke run)")
    args = parser.parse_args()
    args.writes = 40 if args.quick else 200
    args.flood = 10 if args.quick else 50
    args.restart_writes = 100
    logging.basicConfig(level=logging.ERROR)
    sizes = [int(s) for s in args.nodes.split(",")]
    print(
        f"bounded mesh vs full mesh, in-process nodes, insecure, loopback; "
        f"max_peers={args.max_peers}; {args.writes} latency writes, "
        f"{args.flood} flood writes per node, {args.restart_writes} writes while 10% are down"
    )
    header = (
        f"{'N':>3} {'mesh':<8} {'p50 ms':>8} {'p99 ms':>8} {'upd/s':>8} "
        f"{'B/upd/rcv':>10} {'links':>11} {'restart s':>10}"
    )
    print(header)
    for n in sizes:
        for label, max_peers in (("full", 0), (f"bound{args.max_peers}", args.max_peers)):
            with tempfile.TemporaryDirectory(prefix="bench-mesh-") as tmp:
                r = asyncio.run(run(n, max_peers, args, Path(tmp)))
            print(
                f"{n:>3} {label:<8} {r['p50_ms']:>8.1f} {r['p99_ms']:>8.1f} "
                f"{r['updates_s']:>8.0f} {r['bytes_per_update_per_receiver']:>10.1f} "
                f"{r['links_mean']:>5.1f}/{r['links_max']:<5.0f} {r['restart_s']:>10.2f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
