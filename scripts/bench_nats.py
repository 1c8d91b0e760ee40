"""Benchmark site-to-site sync over NATS, side by side with a direct LAN link.

    .venv/bin/python scripts/bench_nats.py [--cut 60] [--coalesce S] [--quick] [--json]

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
- catch-up after a cut, two ways (target: bytes within 1.2x of the missed
  updates' own bytes):
  - node down: B is stopped for ``--cut`` seconds while A keeps writing, then
    started again (nats and lan);
  - link cut (nats only): three servers, A and B each knowing only its own; B's
    server is killed for ``--cut`` seconds while both nodes keep running and A
    writes, then started again. B never restarts: this is a WAN link that drops.
  Each: the time until B has everything, the bytes B received meanwhile, and
  the bytes of the updates it missed.

``run_sites(args) -> dict`` runs all of it and returns the figures (``report``
prints them); ``run(mode, root, ca, url, args)`` is one transport's run, and
``run_link_cut(root, ca, args)`` the link cut (both used by bench_sites.py).

Both sites share this process and its event loop (and the machine's cores with
anything else running): absolute figures are pessimistic, the comparison fair.
"""

from __future__ import annotations

import argparse
import asyncio
import json
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


async def settle(site: Site) -> None:
    """Until what the site's NATS consumer has yet to replay is applied too, then a
    moment more: the catch-up's bytes include the replay after the last key shows."""
    assert site.daemon is not None
    link = site.daemon.nats
    if link is not None:
        deadline = time.monotonic() + WAIT_S
        while True:
            status = await link.status()
            if status.get("acked_seq", 0) >= status.get("stream_last_seq", 1):
                break
            if time.monotonic() > deadline:
                status.pop("docs", None)
                raise TimeoutError(f"the NATS consumer did not catch up: {status}")
            await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)  # what else arrives (duplicates, anti-entropy) is counted too


async def write_through_cut(store: Store, args: argparse.Namespace) -> tuple[int, int]:
    """``args.cut`` seconds of writes spread evenly on ``store`` (the side still
    up); how many, and the bytes of their updates (what the other side missed)."""
    stream = store.changes(maxsize=1 << 20)
    cut_end = time.monotonic() + args.cut
    writes = 0
    while time.monotonic() < cut_end:
        await store.abatch([Set(DOC, f"cut{writes}", PAYLOAD)])
        writes += 1
        await asyncio.sleep(args.cut / args.cut_writes)
    await asyncio.sleep(0.2)
    missed = 0
    while (event := stream.get_nowait()) is not None:
        missed += len(event.update)
    stream.close()
    return writes, missed


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
    await asyncio.gather(settle(a), settle(b))  # it starts on a quiet link
    await b.stop()
    i, missed = await write_through_cut(a.store, args)
    await b.start()
    start = time.perf_counter()
    await wait_key(b.store, f"cut{i - 1}")
    catchup_s = time.perf_counter() - start
    await settle(b)
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


async def run_link_cut(root: Path, ca: Path, args: argparse.Namespace) -> dict[str, Any]:
    """B's NATS server killed for ``args.cut`` s while both nodes run; A writes."""
    with nats_cluster(root / "nats-cut", size=3, advertise=False) as servers:
        base: dict[str, Any] = {"port": 0, "mdns": False, "anti_entropy_s": 3600.0}

        def nats(url: str) -> NatsConfig:
            return NatsConfig(
                servers=(url,),
                stream="BENCH_cut",
                replicas=3,  # the stream outlives the one server lost
                anti_entropy_s=3600.0,
                coalesce_s=args.coalesce,
            )

        a = Site(root, "cut-a", ca, nats=nats(servers[0].url), **base)
        b = Site(root, "cut-b", ca, nats=nats(servers[1].url), **base)
        await a.start()
        await b.start()
        assert a.store is not None and b.store is not None and b.daemon is not None
        link = b.daemon.nats
        assert link is not None
        try:
            a.store.create_document(DOC)
            await a.store.abatch([Set(DOC, "hello", PAYLOAD)])
            await wait_key(b.store, "hello")
            await asyncio.gather(settle(a), settle(b))  # the cut starts on a quiet link
            servers[1].kill()
            deadline = time.monotonic() + WAIT_S
            while link.stats.connected:
                assert time.monotonic() < deadline, "B's link did not notice its server died"
                await asyncio.sleep(0.01)
            i, missed = await write_through_cut(a.store, args)
            # The precondition of catching up by one node's diff: A applied the
            # stream it wrote (under load its consumer trails its own publishes,
            # and B would rightly replay instead).
            await settle(a)
            before = link.stats.bytes_in
            servers[1].start()
            start = time.perf_counter()
            await wait_key(b.store, f"cut{i - 1}")
            catchup_s = time.perf_counter() - start
            await settle(b)
            return {
                "cut_writes": i,
                "missed_bytes": missed,
                "catchup_s": catchup_s,
                "catchup_bytes": link.stats.bytes_in - before,
                "catchups_by_diff": link.stats.catchups_by_diff,
                "reconnects": link.stats.reconnects,
            }
        finally:
            await b.stop()
            await a.stop()


def options(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (defaults: a 60 s cut, the figures the issue's targets name)."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--cut", type=float, default=60.0, help="seconds site B is away")
    parser.add_argument("--cut-writes", type=int, default=3000, help="writes on A during the cut")
    parser.add_argument("--latency-writes", type=int, default=300)
    parser.add_argument("--burst", type=int, default=5000)
    parser.add_argument(
        "--coalesce", type=float, default=0.0, help="sync.nats.coalesce_s of both sites"
    )
    parser.add_argument("--quick", action="store_true", help="small run: --cut 5, fewer writes")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    if args.quick:
        args.cut, args.cut_writes, args.latency_writes, args.burst = 5.0, 500, 100, 1000
    return args


async def run_sites(args: argparse.Namespace) -> dict[str, Any]:
    """Every figure of this benchmark: ``nats`` and ``lan`` (``run``; node down for
    the cut) and ``nats_link_cut`` (``run_link_cut``), each a dict of figures."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        tls.init_cluster(root / "ca")
        results: dict[str, Any] = {}
        with nats_cluster(root / "nats") as servers:
            results["nats"] = await run("nats", root, root / "ca", servers[0].url, args)
        results["lan"] = await run("lan", root, root / "ca", None, args)
        results["nats_link_cut"] = await run_link_cut(root, root / "ca", args)
    for figures in results.values():
        figures["catchup_ratio"] = figures["catchup_bytes"] / max(1, figures["missed_bytes"])
    return results


def report(results: dict[str, Any], args: argparse.Namespace) -> None:
    """Print ``run_sites``'s figures side by side."""
    print(
        f"site-to-site, one process, cut {args.cut:.0f} s ({args.cut_writes} writes planned), "
        f"nats coalesce_s {args.coalesce}"
    )
    print(f"{'':30}{'nats':>14}{'lan (baseline)':>16}")
    rows = [
        ("write-to-visible p50 ms", "p50_ms", "{:.2f}"),
        ("write-to-visible p99 ms", "p99_ms", "{:.2f}"),
        ("updates/s", "updates_per_s", "{:.0f}"),
        ("wire bytes per update", "wire_bytes_per_update", "{:.0f}"),
    ]
    for label, key, fmt in rows:
        nats, lan = fmt.format(results["nats"][key]), fmt.format(results["lan"][key])
        print(f"{label:30}{nats:>14}{lan:>16}")
    print()
    print(f"catch-up after a {args.cut:.0f} s cut")
    print(f"{'':30}{'nats link cut':>14}{'nats node down':>16}{'lan node down':>16}")
    cut = [results["nats_link_cut"], results["nats"], results["lan"]]
    for label, key, fmt in (
        ("writes during the cut", "cut_writes", "{}"),
        ("missed update bytes", "missed_bytes", "{}"),
        ("catch-up s", "catchup_s", "{:.2f}"),
        ("catch-up bytes received", "catchup_bytes", "{}"),
        ("bytes / missed (<= 1.2)", "catchup_ratio", "{:.2f}"),
    ):
        a, b, c = (fmt.format(r[key]) for r in cut)
        print(f"{label:30}{a:>14}{b:>16}{c:>16}")
    for name, r in zip(("nats link cut", "nats node down", "lan node down"), cut, strict=True):
        verdict = "met" if r["catchup_ratio"] <= 1.2 else "NOT met"
        print(
            f"{name}: catch-up bytes {r['catchup_ratio']:.2f}x missed (target <= 1.2x: {verdict})"
        )


async def main() -> None:
    args = options()
    results = await run_sites(args)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        report(results, args)


if __name__ == "__main__":
    asyncio.run(main())
