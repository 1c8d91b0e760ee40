#!/usr/bin/env python3
"""The node's side of the worker link under write load, two ways side by side.

A fake worker (a thread with its own event loop, on a real socketpair) keeps
``--inflight`` invocations' ``w`` messages outstanding, as a busy worker does
(each loop turn's messages in one write, through the link's Outbox). The node's
side, on this thread's loop, answers them against a real durable store:

- per-message:  one await per message, one task running ``Store.abatch`` per
                write (what the node did before the FrameReader)
- per-turn:     the FrameReader and ``WriteQueue`` (every write of one turn of
                the loop queued to the store in one hand-off, answered by callbacks)

Printed per round and as the median of the rounds: writes/s, CPU microseconds
per write of the node's loop thread and of the store's writer thread, writes per
group commit.

    .venv/bin/python scripts/bench_worker_link.py [--seconds 2] [--rounds 3] [--inflight 64]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import statistics
import struct
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import msgpack

from edgestate.node.workers.process import WorkerProcess
from edgestate.node.workers.protocol import FrameReader, Outbox, decode_ops, encode_ops
from edgestate.node.workers.writes import WriteQueue
from edgestate.store import Set, Store

MODES = ("per-message", "per-turn")
_LEN = struct.Struct(">I")


def thread_cpu(native_id: int) -> float:
    """User + system CPU seconds of one thread of this process."""
    fields = Path(f"/proc/self/task/{native_id}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def fake_worker(sock: socket.socket, inflight: int, stop: threading.Event) -> None:
    """Keep ``inflight`` writes outstanding until ``stop``; then close the link."""

    async def run() -> None:
        reader, writer = await asyncio.open_unix_connection(sock=sock)
        outbox = Outbox(writer)
        frames = FrameReader(reader)
        next_id = 0

        def send() -> None:
            nonlocal next_id
            next_id += 1
            ops = encode_ops([Set("kv", f"k{next_id % 997}", b"v%d" % next_id)])
            outbox.send({"t": "w", "id": next_id, "ops": ops})

        for _ in range(inflight):
            send()
        while not stop.is_set() and (batch := await frames.batch()) is not None:
            for message in batch:
                assert message["ok"], message
                send()
        writer.close()

    asyncio.run(run())


async def serve_per_message(store: Store, worker: WorkerProcess, reader: Any) -> None:
    async def commit(message: dict[str, Any]) -> None:
        await store.abatch(decode_ops(message["ops"]))
        worker.send({"t": "wr", "id": message["id"], "ok": True})

    tasks: set[asyncio.Task[None]] = set()
    while True:
        try:
            (size,) = _LEN.unpack(await reader.readexactly(_LEN.size))
            message = msgpack.unpackb(await reader.readexactly(size), raw=False)
        except asyncio.IncompleteReadError:
            break
        task = asyncio.create_task(commit(message))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.wait(tasks)


async def serve_per_turn(store: Store, worker: WorkerProcess, reader: Any) -> None:
    frames = FrameReader(reader)
    writes = WriteQueue(store)
    while (batch := await frames.batch()) is not None:
        writes.add(worker, batch)
    if worker.commits:
        await asyncio.wait(set(worker.commits))


async def round_of(store: Store, mode: str, seconds: float, inflight: int) -> dict[str, float]:
    ours, theirs = socket.socketpair()
    stop = threading.Event()
    sender = threading.Thread(target=fake_worker, args=(theirs, inflight, stop), daemon=True)
    reader, writer = await asyncio.open_unix_connection(sock=ours)
    worker = WorkerProcess(0, None, writer, time.monotonic())  # type: ignore[arg-type]
    answered = 0
    send = worker.send

    def counting(message: dict[str, Any]) -> None:
        nonlocal answered
        answered += 1
        send(message)

    worker.send = counting  # type: ignore[method-assign]
    writer_tid = next(t.native_id for t in threading.enumerate() if t.name == "edgestate-writer")
    assert writer_tid is not None
    serve = serve_per_message if mode == "per-message" else serve_per_turn
    task = asyncio.create_task(serve(store, worker, reader))
    sender.start()
    try:
        await asyncio.sleep(0.3)  # warm-up
        n0, c0 = answered, store.stats()["commits"]
        loop0, writer0, t0 = time.thread_time(), thread_cpu(writer_tid), time.perf_counter()
        await asyncio.sleep(seconds)
        n, commits = answered - n0, store.stats()["commits"] - c0
        loop_s, writer_s = time.thread_time() - loop0, thread_cpu(writer_tid) - writer0
        elapsed = time.perf_counter() - t0
    finally:
        stop.set()
        await task
        sender.join(timeout=30)
        writer.close()
    return {
        "rps": n / elapsed,
        "loop": loop_s / n * 1e6,
        "writer": writer_s / n * 1e6,
        "group": n / max(1, commits),
    }


def line(mode: str, r: dict[str, float]) -> str:
    return (
        f"{mode:<12} {r['rps']:>9,.0f} {r['loop']:>13.1f} {r['writer']:>15.1f} {r['group']:>13.1f}"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--inflight", type=int, default=64)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="edgestate-bench-link-"))
    store = Store.open(work / "data")
    store.create_document("kv")
    results: dict[str, list[dict[str, float]]] = {m: [] for m in MODES}
    try:
        print(f"{args.inflight} writes in flight, {args.seconds:g} s per round")
        print(
            f"{'node side':<12} {'writes/s':>9} {'loop us/write':>13} {'writer us/write':>15} "
            f"{'writes/commit':>13}"
        )
        for _ in range(args.rounds):
            for mode in MODES:
                results[mode].append(await round_of(store, mode, args.seconds, args.inflight))
                print(line(mode, results[mode][-1]))
        print("median of the rounds:")
        medians = {
            m: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for m, rs in results.items()
        }
        for mode in MODES:
            print(line(mode, medians[mode]))
        old, new = medians["per-message"], medians["per-turn"]
        print(
            f"per-turn vs per-message: writes/s {new['rps'] / old['rps']:.2f}x, loop CPU per "
            f"write {new['loop'] / old['loop']:.2f}x, writer CPU per write "
            f"{new['writer'] / old['writer']:.2f}x"
        )
    finally:
        store.close()
        shutil.rmtree(work, ignore_errors=True)
    print(f"(cpu: {os.cpu_count()} cores, shared with whatever else runs)")


if __name__ == "__main__":
    asyncio.run(main())
