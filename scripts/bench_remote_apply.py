#!/usr/bin/env python3
"""Where a remote update's apply goes: the store's writer job, stage by stage.

A real Store in a tmp dir holds a document of ``--keys`` keys (default 1k and
100k); a pycrdt client doc synced from it makes ``--n`` small updates (one key
set each, the y-websocket client's typical edit), and the store applies them as
a peer's or a Yjs client's (``origin`` set). Per update it prints the median and
p99 of every stage of the writer's job and of the whole job, then the caller's
round trip, and side by side bare pycrdt ``Doc.apply_update`` of the same
updates into a doc of the same state (what an in-memory hub pays). A second pass
re-applies every update (duplicates: a resync sends what we hold).

The stages are timed by wrapping the store's own functions where the job calls
them (~0.2 us added per wrapped call); stages a given version of the code does
not have are left out, so the same script measures an older tree
(``PYTHONPATH=/work/main``) for a before/after in one run.

Part two, the thread round trip: ``submit_update`` on an asyncio loop, timed
from the call to the writer's job starting, from the job's end to the caller's
future waking, one update at a time (a quiet loop) and in bursts of ``--burst``.

    PYTHONPATH=. .venv/bin/python scripts/bench_remote_apply.py
    PYTHONPATH=. .venv/bin/python scripts/bench_remote_apply.py --keys 1000 --n 300
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pycrdt import Doc, Map, TransactionEvent

from edgestate.store import Durability, Set, Store, StoreConfig

DOC = "bench"
ORIGIN = "peer:bench"

# (label, module, attribute path): the functions the apply job calls, in order.
# Nested stages (inside another one) are indented in the label.
STAGES: list[tuple[str, str, str]] = [
    ("v1 check", "edgestate.store.jobs", "check_v1_update"),
    ("scan (v1 + blocks + keys)", "edgestate.store.jobs", "scan_update"),
    ("walk (content + blocks)", "edgestate.store.jobs", "update_blocks"),
    ("walk + stale check", "edgestate.store.jobs", "blocks_of_collected"),
    ("gap check", "edgestate.store.jobs", "ready"),
    ("duplicate check", "edgestate.store.jobs", "contained"),
    ("integrate (checked)", "edgestate.store.jobs", "apply_checked"),
    ("  pycrdt apply + observers", "edgestate.store.crdt", "CrdtDocument.apply_remote"),
    ("materialize", "edgestate.store.crdt", "CrdtDocument.materialized"),
    ("log + kv put", "edgestate.store.group", "Group.persist"),
    ("hold lookup", "edgestate.store.hold", "CausalHold.of"),
]
WHOLE = ("whole job", "edgestate.store.jobs", "_apply")


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Timings:
    """Per-stage durations (us) of the update being applied now."""

    def __init__(self) -> None:
        self.current: dict[str, float] = {}
        self.runs: list[dict[str, float]] = []
        self.starts: list[int] = []  # perf_counter_ns at each job start
        self.ends: list[int] = []

    def wrap(self, label: str, fn: Callable[..., Any], whole: bool = False) -> Callable[..., Any]:
        clock = time.perf_counter_ns

        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = clock()
            if whole:
                self.starts.append(t0)
            try:
                return fn(*args, **kwargs)
            finally:
                t1 = clock()
                self.current[label] = self.current.get(label, 0.0) + (t1 - t0) / 1000
                if whole:
                    self.ends.append(t1)

        return timed

    def take(self) -> None:
        self.runs.append(self.current)
        self.current = {}


@contextmanager
def instrumented(t: Timings) -> Iterator[list[str]]:
    """Wrap every stage the code has; yields the labels found, in order."""
    undo: list[tuple[Any, str, Any]] = []
    found: list[str] = []
    for label, modname, path in [*STAGES, WHOLE]:
        owner: Any = importlib.import_module(modname)
        *parents, attr = path.split(".")
        for p in parents:
            owner = getattr(owner, p, None)
        if owner is None or not hasattr(owner, attr):
            continue
        original = getattr(owner, attr)
        setattr(owner, attr, t.wrap(label, original, whole=(label == WHOLE[0])))
        undo.append((owner, attr, original))
        found.append(label)
    try:
        yield found
    finally:
        for owner, attr, original in reversed(undo):
            setattr(owner, attr, original)


def client_updates(base: bytes, keys: int, n: int, seed: int) -> list[bytes]:
    """``n`` one-key updates a client holding ``base`` makes, overwriting random keys."""
    doc: Doc[Any] = Doc()
    doc.apply_update(base)
    root = doc.get("root", type=Map)
    out: list[bytes] = []

    def grab(event: TransactionEvent) -> None:
        out.append(bytes(event.update))

    sub = doc.observe(grab)
    rng = random.Random(seed)
    for i in range(n):
        root[f"key:{rng.randrange(keys):08d}"] = f"client value {i}".encode()
    doc.unobserve(sub)
    return out


def row(name: str, samples: list[float], floor: float | None) -> None:
    med, p99 = statistics.median(samples), pct(samples, 0.99)
    ratio = f"{med / floor:8.1f}x bare" if floor else ""
    print(f"  {name:<30} median {med:8.2f} us   p99 {p99:8.2f} us {ratio}")


def bare(base: bytes, updates: list[bytes]) -> list[float]:
    doc: Doc[Any] = Doc()
    doc.get("root", type=Map)
    doc.apply_update(base)
    out = []
    for u in updates:
        t0 = time.perf_counter_ns()
        doc.apply_update(u)
        out.append((time.perf_counter_ns() - t0) / 1000)
    return out


def fill(store: Store, keys: int) -> None:
    store.create_document(DOC)
    chunk = 10_000
    for start in range(0, keys, chunk):
        store.batch(
            [Set(DOC, f"key:{i:08d}", b"v" * 16) for i in range(start, min(keys, start + chunk))]
        )


def add_clients(store: Store, clients: int) -> None:
    """``clients`` more Yjs clients in the document's history, one key each (every
    browser session is a client of its own: the state vector grows with them)."""
    for n in range(clients):
        doc: Doc[Any] = Doc(client_id=1_000_000 + n)
        doc.get("root", type=Map)[f"session:{n}"] = b"hello"
        store.apply_update(DOC, doc.get_update(), origin=ORIGIN)


def stages(store: Store, updates: list[bytes], floor: float, title: str) -> None:
    t = Timings()
    trips: list[float] = []
    with instrumented(t) as found:
        for u in updates:
            t0 = time.perf_counter_ns()
            store.apply_update(DOC, u, origin=ORIGIN)
            trips.append((time.perf_counter_ns() - t0) / 1000)
            t.take()
    print(f" {title} ({len(updates)} updates)")
    for label in found:
        samples = [r[label] for r in t.runs if label in r]
        if samples:
            row(label, samples, None if label != WHOLE[0] else floor)
    row("apply_update round trip", trips, floor)


async def round_trips(store: Store, updates: list[bytes], burst: int) -> None:
    t = Timings()
    with instrumented(t):
        # One at a time: the loop idles while the writer works.
        to_job, job_to_loop, whole = [], [], []
        for u in updates[: len(updates) // 2]:
            t0 = time.perf_counter_ns()
            fut = store.submit_update(DOC, u, origin=ORIGIN)
            await fut
            t1 = time.perf_counter_ns()
            to_job.append((t.starts[-1] - t0) / 1000)
            job_to_loop.append((t1 - t.ends[-1]) / 1000)
            whole.append((t1 - t0) / 1000)
        print(" thread round trip, one at a time (submit_update, BATCHED)")
        row("loop -> job start", to_job, None)
        row("job end -> loop wakes", job_to_loop, None)
        row("submit -> future done", whole, None)
        # Bursts: every update of a burst queued in one loop turn.
        rest = updates[len(updates) // 2 :]
        first, last_wake, per_update = [], [], []
        for i in range(0, len(rest) - burst + 1, burst):
            chunk = rest[i : i + burst]
            n0 = len(t.starts)
            t0 = time.perf_counter_ns()
            futs = [store.submit_update(DOC, u, origin=ORIGIN) for u in chunk]
            await asyncio.gather(*futs)
            t1 = time.perf_counter_ns()
            first.append((t.starts[n0] - t0) / 1000)
            last_wake.append((t1 - t.ends[-1]) / 1000)
            per_update.append((t1 - t0) / 1000 / len(chunk))
        if first:
            print(f" thread round trip, bursts of {burst}")
            row("loop -> first job start", first, None)
            row("last job end -> loop wakes", last_wake, None)
            row("burst time per update", per_update, None)


class _PerEventWakeups:
    """What ChangeStream did before: one thread-safe loop wakeup per event (kept
    here so the comparison is side by side in one run)."""

    def __init__(self, store: Store) -> None:
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[object] = asyncio.Queue()
        self._unsubscribe = store.subscribe(self._from_writer, early=True)

    def _from_writer(self, event: object) -> None:
        self._loop.call_soon_threadsafe(self._queue.put_nowait, event)

    async def get(self) -> object:
        return await self._queue.get()

    def close(self) -> None:
        self._unsubscribe()


async def round_trips_stream(store: Store, updates: list[bytes], burst: int) -> None:
    """Bursts read from an early change stream (the sync daemon's gossip pump),
    from a burst's first submit to its last event on the loop; alternating with
    a listener that wakes the loop once per event."""
    results: dict[str, list[float]] = {"ChangeStream": [], "one wakeup per event": []}
    for i in range(0, len(updates) - burst + 1, burst):
        chunk = updates[i : i + burst]
        name = list(results)[(i // burst) % 2]
        reader: Any = (
            store.changes(early=True) if name == "ChangeStream" else _PerEventWakeups(store)
        )
        try:
            t0 = time.perf_counter_ns()
            futs = [store.submit_update(DOC, u, origin=ORIGIN) for u in chunk]
            got = 0
            async with asyncio.timeout(30):  # bounded, should an event never come
                while got < len(chunk):  # every update here is new: one event each
                    if await reader.get() is None:
                        break
                    got += 1
            t1 = time.perf_counter_ns()
            await asyncio.gather(*futs)
        finally:
            reader.close()
        results[name].append((t1 - t0) / 1000 / len(chunk))
    print(f" early change events, bursts of {burst}: first submit -> last event, per update")
    for name, samples in results.items():
        if samples:
            row(name, samples, None)


def run(keys: int, n: int, burst: int, durability: Durability, clients: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = Store.open(Path(tmp) / "data", StoreConfig(durability=durability))
        try:
            fill(store, keys)
            add_clients(store, clients)
            base = store.diff(DOC, None)
            updates = client_updates(base, keys, 2 * n, seed=keys)
            fresh, later = updates[:n], updates[n:]
            floor_samples = bare(base, fresh)
            floor = statistics.median(floor_samples)
            print(f"\n== {keys:,} keys, {clients + 1:,} clients, {durability.name} ==")
            row("bare pycrdt Doc.apply_update", floor_samples, floor)
            stages(store, fresh, floor, "new updates")
            stages(store, fresh, statistics.median(bare(base, fresh + fresh)[n:]), "duplicates")
            asyncio.run(round_trips(store, later, burst))
            asyncio.run(round_trips_stream(store, client_updates(base, keys, n, keys + 1), burst))
        finally:
            store.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--keys", type=int, nargs="+", default=[1000, 100_000])
    ap.add_argument("--n", type=int, default=500, help="updates per pass")
    ap.add_argument("--burst", type=int, default=50)
    ap.add_argument(
        "--clients", type=int, nargs="+", default=[0, 1000], help="extra clients in history"
    )
    ap.add_argument("--sync", action="store_true", help="Durability.SYNC (fsync each group)")
    # The node's own setting (edgestate.cli.node_cmds): without it a thread
    # waits up to 5 ms for the GIL, which would swamp every figure here.
    ap.add_argument("--switch-interval", type=float, default=0.0002)
    args = ap.parse_args()
    sys.setswitchinterval(args.switch_interval)
    where = Path(importlib.import_module("edgestate").__file__ or "").parent
    print(f"python {sys.version.split()[0]}, store from {where}")
    durability = Durability.SYNC if args.sync else Durability.BATCHED
    for keys in args.keys:
        for clients in args.clients:
            run(keys, args.n, args.burst, durability, clients)


if __name__ == "__main__":
    main()
