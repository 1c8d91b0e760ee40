#!/usr/bin/env python3
"""Store benchmark: edgestate operations side by side with raw py-lmdb (the floor).

Prints median and p99 per operation at 1, 10k and 1M keys, durable write
throughput at 1/8/64 concurrent writers against one-fsync-per-write, reopen time
of the largest store, and disk use after a long stream of overwrites.

    .venv/bin/python scripts/bench_store.py            # full run (1M keys: minutes)
    .venv/bin/python scripts/bench_store.py --quick    # 1 and 10k keys only
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import lmdb

from edgestate.store import Durability, GcMode, Set, Store, StoreConfig

DOC = "bench"


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def timeit(fn: Callable[[int], object], n: int) -> list[float]:
    """Per-call latencies in microseconds."""
    out = []
    for i in range(n):
        t0 = time.perf_counter_ns()
        fn(i)
        out.append((time.perf_counter_ns() - t0) / 1000)
    return out


def row(name: str, samples: list[float], floor: list[float] | None = None) -> None:
    med, p99 = statistics.median(samples), pct(samples, 0.99)
    ratio = f"{med / statistics.median(floor):6.2f}x floor" if floor else ""
    print(f"  {name:<34} median {med:9.2f} us   p99 {p99:9.2f} us   {ratio}")


def load(store: Store, n: int, value: bytes = b"v" * 32) -> None:
    chunk = 5000
    for start in range(0, n, chunk):
        store.batch([Set(DOC, f"key:{i:08d}", value) for i in range(start, min(n, start + chunk))])


def raw_env(path: Path, n: int, value: bytes = b"v" * 32) -> tuple[lmdb.Environment, object]:
    env = lmdb.open(str(path), map_size=64 << 30, max_dbs=2)
    db = env.open_db(b"kv")
    chunk = 50_000
    for start in range(0, n, chunk):
        with env.begin(write=True, db=db) as txn:
            for i in range(start, min(n, start + chunk)):
                txn.put(f"bench\x00key:{i:08d}".encode(), value)
    return env, db


def bench_size(root: Path, n: int, ops: int) -> Path:
    print(f"\n== {n:,} keys ==")
    sdir = root / f"store-{n}"
    store = Store.open(sdir, StoreConfig(durability=Durability.BATCHED))
    store.create_document(DOC)
    t0 = time.perf_counter()
    load(store, n)
    print(f"  (loaded in {time.perf_counter() - t0:.1f} s)")
    env, db = raw_env(root / f"raw-{n}", n)
    keys = [f"key:{(i * 7919) % n:08d}" for i in range(ops)]
    raw_keys = [f"bench\x00{k}".encode() for k in keys]

    def raw_get(i: int) -> object:
        with env.begin(db=db) as txn:
            return txn.get(raw_keys[i])

    raw = timeit(raw_get, ops)
    row("raw py-lmdb get (floor)", raw)
    row("get", timeit(lambda i: store.get(DOC, keys[i]), ops), raw)
    store.close()
    # Writes are measured durable (the default), each against its own floor.
    store = Store.open(sdir)

    def raw_put(i: int) -> None:
        with env.begin(write=True, db=db) as txn:
            txn.put(raw_keys[i], b"w" * 32)

    raw_w = timeit(raw_put, min(ops, 2000))
    row("raw py-lmdb put+fsync (floor)", raw_w)
    row(
        "set (durable)", timeit(lambda i: store.set(DOC, keys[i], b"w" * 32), min(ops, 2000)), raw_w
    )
    row(
        "incr (durable)", timeit(lambda i: store.incr(DOC, f"ctr:{i % 100}"), min(ops, 2000)), raw_w
    )
    row("scan 100 keys", timeit(lambda i: store.scan(DOC, "key:", None, 100), min(ops, 2000)))
    # apply_update: updates produced by a second store, applied to this one
    with Store.open(root / f"peer-{n}", StoreConfig(durability=Durability.BATCHED)) as peer:
        peer.create_document(DOC)
        updates: list[bytes] = []
        peer.subscribe(lambda e: updates.append(e.update))
        for i in range(min(ops, 2000)):
            peer.set(DOC, f"peer:{i}", b"p" * 32)
    row(
        "apply_update (durable)",
        timeit(lambda i: store.apply_update(DOC, updates[i]), len(updates)),
        raw_w,
    )
    store.close()
    env.close()
    return sdir


def bench_batched(root: Path) -> None:
    print("\n== batched sets (one batch() of 500 sets, durable) ==")
    with Store.open(root / "batched") as store:
        store.create_document(DOC)
        n_batches, per = 40, 500
        t0 = time.perf_counter()
        for b in range(n_batches):
            store.batch([Set(DOC, f"k{b}:{i}", b"v" * 32) for i in range(per)])
        dt = time.perf_counter() - t0
        print(f"  {n_batches * per / dt:12,.0f} sets/s")


def _ours(path: Path, writers: int, seconds: float) -> tuple[float, list[float]]:
    """edgestate: asyncio callers sharing group commits."""
    lat: list[float] = []
    with Store.open(path) as store:
        store.create_document(DOC)

        async def writer(w: int, stop: float) -> int:
            n = 0
            while time.perf_counter() < stop:
                t0 = time.perf_counter_ns()
                await store.abatch([Set(DOC, f"w{w}:{n % 1000}", b"v" * 32)])
                lat.append((time.perf_counter_ns() - t0) / 1000)
                n += 1
            return n

        async def run() -> int:
            stop = time.perf_counter() + seconds
            return sum(await asyncio.gather(*(writer(w, stop) for w in range(writers))))

        total = asyncio.run(run())
    return total / seconds, lat


def _one_fsync_per_write(path: Path, writers: int, seconds: float) -> float:
    """The floor without group commit: one LMDB commit + fsync per write."""
    env = lmdb.open(str(path), map_size=1 << 30)
    count = [0]
    lock = threading.Lock()
    stop_at = time.perf_counter() + seconds

    def raw_writer(w: int) -> None:
        n = 0
        while time.perf_counter() < stop_at:
            with env.begin(write=True) as txn:
                txn.put(f"w{w}:{n % 1000}".encode(), b"v" * 32)
            n += 1
        with lock:
            count[0] += n

    threads = [threading.Thread(target=raw_writer, args=(w,)) for w in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    env.close()
    return count[0] / seconds


def bench_concurrency(root: Path, seconds: float) -> None:
    print("\n== durable writers: acknowledged writes/s (group commit vs one fsync per write) ==")
    for writers in (1, 8, 64):
        ours, lat = _ours(root / f"conc-{writers}", writers, seconds)
        raw = _one_fsync_per_write(root / f"rawconc-{writers}", writers, seconds)
        print(
            f"  {writers:3d} writers: edgestate {ours:9,.0f}/s "
            f"(median {statistics.median(lat):7.0f} us, p99 {pct(lat, 0.99):7.0f} us)"
            f"   one-fsync-per-write {raw:9,.0f}/s   {ours / raw:5.1f}x"
        )


def bench_reopen(sdir: Path, n: int) -> None:
    print(f"\n== reopen a {n:,}-key store and serve the first read (fresh process) ==")
    code = (
        "import time; t0 = time.perf_counter()\n"
        "from edgestate.store import Store\n"
        "t1 = time.perf_counter()\n"
        f"s = Store.open({str(sdir)!r}); v = s.get('bench', 'key:00000042')\n"
        "t2 = time.perf_counter(); assert v is not None\n"
        "print(f'{(t2 - t1) * 1000:.2f} {(t1 - t0) * 1000:.2f}')\n"
    )
    samples = []
    for _ in range(5):
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        )
        samples.append(tuple(float(x) for x in out.stdout.split()))
    opens = [s[0] for s in samples]
    print(
        f"  open + first get: median {statistics.median(opens):.2f} ms, max {max(opens):.2f} ms"
        f" (import of the package, not counted: {statistics.median(s[1] for s in samples):.0f} ms)"
    )


def bench_overwrites(root: Path, total: int, keys: int) -> None:
    print(f"\n== disk use after {total:,} overwrites of {keys:,} keys ==")
    live = keys * (len("key:000000") + 12)
    print(f"  live data (keys + values): {live:,} bytes")
    print(
        "  garbage collection   at 25%      at 50%     at 100%  (snapshot + log, x live);"
        " batched sets/s"
    )
    # Same stream, side by side: history kept (the Yjs default) vs collected.
    for mode in (GcMode.OFF, GcMode.SOLO):
        sdir = root / f"overwrite-{mode.value}"
        config = StoreConfig(durability=Durability.BATCHED, gc=mode)
        marks: list[float] = []
        began = time.perf_counter()
        with Store.open(sdir, config) as store:
            store.create_document(DOC)
            per = 500
            for start in range(0, total, per):
                store.batch(
                    [
                        Set(DOC, f"key:{(start + i) % keys:06d}", f"{start + i:012d}".encode())
                        for i in range(per)
                    ]
                )
                done = start + per
                if done in (total // 4, total // 2, total):
                    info = store.document_info(DOC)
                    marks.append((info.snapshot_bytes + info.log_bytes) / live)
            status = store.gc_status(DOC)
            rate = total / (time.perf_counter() - began)
        file_bytes = (sdir / "data.mdb").stat().st_size
        print(
            f"  {mode.value:<10} "
            + "".join(f"{m:10.1f}x" for m in marks)
            + f";  {rate:,.0f}/s  (LMDB file {file_bytes / live:.0f}x; "
            f"{status.collected_items:,} items collected)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="skip the 1M-key runs")
    parser.add_argument("--ops", type=int, default=20_000)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="edgestate-bench-"))
    try:
        sizes = [1, 10_000] if args.quick else [1, 10_000, 1_000_000]
        last = root
        for n in sizes:
            last = bench_size(root, n, args.ops)
        bench_batched(root)
        bench_concurrency(root, 2.0 if args.quick else 3.0)
        bench_reopen(last, sizes[-1])
        bench_overwrites(root, 100_000 if args.quick else 1_000_000, 1000)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"\n(cpu: {os.cpu_count()} cores; {time.strftime('%Y-%m-%d')})")


if __name__ == "__main__":
    main()
