"""Benchmark site-to-site sync over NATS, side by side with a direct LAN link.

    .venv/bin/python scripts/bench_nats.py [--cut 60] [--quick]

Two single-node sites, each a store plus its SyncDaemon (mutual TLS, one cluster
CA), in this one process, on 127.0.0.1 only. They are joined either

- nats: only through one local ``nats-server`` (JetStream, file store), or
- lan:  by a direct WebSocket link (the baseline: what a LAN gives),

and the same writes run over both. Measured, per transport:

- write-to-visible latency: one 16-byte write at a time on site A, from just
  before the write to B's durable commit of it (p50, p99);
- updates/s: A writes as fast as it can, one update per commit; the rate at
  which they become visible on B;
- wire bytes per update: bytes A sent (NATS: payloads and subjects of its
  messages; LAN: WebSocket frames) per update of that burst;
- catch-up after a cut: B is stopped for ``--cut`` seconds while A keeps
  writing; then the time until B has everything, and the bytes B received
  against the bytes of the updates it missed (target: within 1.2x).

Both sites share this process and its event loop (and the machine's cores with
anything else running): absolute figures are pessimistic, the comparison fair.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run from a checkout without installing the package
    sys.path.insert(0, str(REPO))

from edgestate.devkit.nats_server import nats_cluster  # noqa: E402
from edgestate.store import Durability, Set, Store, StoreConfig  # noqa: E402
from edgestate.sync import NatsConfig, SyncConfig, SyncDaemon, tls  # noqa: E402

PAYLOAD = b"p" * 16
DOC = "bench"
STORE = StoreConfig(durability=Durability.BATCHED)


class Site:
    """One node: a store and its daemon, restartable on the same data and identity."""

    def __init__(self, root: Path, name: str, ca: Path, **config: Any) -> None:
        tls.issue_node(ca, name, root / name)
        self.path = root / f"{name}-data"
        self.config = SyncConfig(tls=tls.files_for(root / name, name), **config)
        self.store: Store | None = None
        self.daemon: SyncDaemon | None = None

    async def start(self) -> None:
        self.store = Store.open(self.path, STORE)
        self.daemon = SyncDaemon(self.store, self.config)
        await self.daemon.start()
        if self.daemon.nats is not None:
            await asyncio.wait_for(self.daemon.nats.ready.wait(), 30)

    async def stop(self) -> None:
        assert self.daemon is not None and self.store is not None
        await self.daemon.close()
        self.store.close()

    def bytes_out(self) -> int:
        assert self.daemon is not None
        nats = self.daemon.nats
        return nats.stats.bytes_out if nats is not None else self.daemon.stats.bytes_out

    def bytes_in(self) -> int:
        assert self.daemon is not None
        nats = self.daemon.nats
        return nats.stats.bytes_in if nats is not None else self.daemon.stats.bytes_in


# A key that has not arrived by then never will: the run fails instead of hanging.
WAIT_S = 120.0


async def wait_key(store: Store, key: str) -> None:
    """Return once ``key`` is committed on ``store`` (woken by its change events)."""
    stream = store.changes()
    try:
        async with asyncio.timeout(WAIT_S):
            while not (store.has_document(DOC) and store.get(DOC, key) is not None):
                await stream.get()
    finally:
        stream.close()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run(
    mode: str, root: Path, ca: Path, url: str | None, args: argparse.Namespace
) -> dict[str, Any]:
    base: dict[str, Any] = {"port": 0, "mdns": False, "anti_entropy_s": 3600.0}
    nats = (
        NatsConfig(
            servers=(url,),
            stream=f"BENCH_{mode}",
            anti_entropy_s=3600.0,
            coalesce_s=args.coalesce,
        )
        if url is not None
        else None
    )
    a = Site(root, f"{mode}-a", ca, nats=nats, **base)
    await a.start()
    assert a.daemon is not None and a.store is not None
    peers = () if nats is not None else (f"127.0.0.1:{a.daemon.port}",)
    b = Site(root, f"{mode}-b", ca, nats=nats, static_peers=peers, **base)
    await b.start()
    assert b.daemon is not None and b.store is not None
    if nats is None:
        await asyncio.wait_for(b.daemon.wait_connected(1), 30)
    a.store.create_document(DOC)
    await a.store.abatch([Set(DOC, "hello", PAYLOAD)])
    await wait_key(b.store, "hello")

    latencies = []
    for i in range(args.latency_writes):
        start = time.perf_counter()
        await a.store.abatch([Set(DOC, f"lat{i}", PAYLOAD)])
        await wait_key(b.store, f"lat{i}")
        latencies.append((time.perf_counter() - start) * 1000)

    out0 = a.bytes_out()
    start = time.perf_counter()
    pending = [a.store.abatch([Set(DOC, f"tp{i}", PAYLOAD)]) for i in range(args.burst)]
    await asyncio.gather(*pending)
    await wait_key(b.store, f"tp{args.burst - 1}")
    elapsed = time.perf_counter() - start
    burst_bytes = a.bytes_out() - out0

    # The cut: B is gone while A writes, spread over the cut.
    await b.stop()
    missed = 0
    stream = a.store.changes(maxsize=1 << 20)
    cut_end = time.monotonic() + args.cut
    i = 0
    while time.monotonic() < cut_end:
        await a.store.abatch([Set(DOC, f"cut{i}", PAYLOAD)])
        i += 1
        await asyncio.sleep(args.cut / args.cut_writes)
    await asyncio.sleep(0.2)
    while (event := stream.get_nowait()) is not None:
        missed += len(event.update)
    stream.close()
    await b.start()
    start = time.perf_counter()
    await wait_key(b.store, f"cut{i - 1}")
    catchup_s = time.perf_counter() - start
    await asyncio.sleep(0.5)  # what else arrives (duplicates, anti-entropy) is counted too
    catchup_bytes = b.bytes_in()
    await b.stop()
    await a.stop()
    return {
        "p50_ms": statistics.median(latencies),
        "p99_ms": pct(latencies, 0.99),
        "updates_per_s": args.burst / elapsed,
        "wire_bytes_per_update": burst_bytes / args.burst,
        "cut_writes": i,
        "missed_bytes": missed,
        "catchup_s": catchup_s,
        "catchup_bytes": catchup_bytes,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cut", type=float, default=60.0, help="seconds site B is away")
    parser.add_argument("--cut-writes", type=int, default=3000, help="writes on A during the cut")
    parser.add_argument("--latency-writes", type=int, default=300)
    parser.add_argument("--burst", type=int, default=5000)
    parser.add_argument(
        "--coalesce", type=float, default=0.0, help="sync.nats.coalesce_s of both sites"
    )
    parser.add_argument("--quick", action="store_true", help="small run: --cut 5, fewer writes")
    args = parser.parse_args()
    if args.quick:
        args.cut, args.cut_writes, args.latency_writes, args.burst = 5.0, 500, 100, 1000
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        tls.init_cluster(root / "ca")
        results = {}
        with nats_cluster(root / "nats") as servers:
            results["nats"] = await run("nats", root, root / "ca", servers[0].url, args)
        results["lan"] = await run("lan", root, root / "ca", None, args)
    print(
        f"site-to-site, one process, cut {args.cut:.0f} s ({args.cut_writes} writes planned), "
        f"nats coalesce_s {args.coalesce}"
    )
    print(f"{'':28}{'nats':>14}{'lan (baseline)':>16}")
    rows = [
        ("write-to-visible p50 ms", "p50_ms", "{:.2f}"),
        ("write-to-visible p99 ms", "p99_ms", "{:.2f}"),
        ("updates/s", "updates_per_s", "{:.0f}"),
        ("wire bytes per update", "wire_bytes_per_update", "{:.0f}"),
        ("writes during the cut", "cut_writes", "{}"),
        ("missed update bytes", "missed_bytes", "{}"),
        ("catch-up s", "catchup_s", "{:.2f}"),
        ("catch-up bytes received", "catchup_bytes", "{}"),
    ]
    for label, key, fmt in rows:
        print(
            f"{label:28}{fmt.format(results['nats'][key]):>14}{fmt.format(results['lan'][key]):>16}"
        )
    for mode in ("nats", "lan"):
        r = results[mode]
        ratio = r["catchup_bytes"] / max(1, r["missed_bytes"])
        print(f"{mode}: catch-up bytes / missed update bytes = {ratio:.2f} (target <= 1.2)")


if __name__ == "__main__":
    asyncio.run(main())
