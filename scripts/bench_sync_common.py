"""What bench_sync.py's child processes share: the payload, the observer of
visible keys and the command loop over a pipe (edgestate nodes and the
pycrdt-websocket baseline alike)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

PAYLOAD = b"p" * 16
# Replies and observer notes go down one pipe from two threads: one lock.
SEND_LOCK = threading.Lock()
CATCHUP_KEYS = 100_000
CATCHUP_BATCH = 1_000


class Observer:
    """Records when each key first became visible on this node; runs on any thread."""

    def __init__(self, conn: Connection, idx: int) -> None:
        self.conn = conn
        self.idx = idx
        self.seen: dict[str, int] = {}
        self.counts: dict[str, int] = {}
        self.local_update_bytes = 0

    def saw(self, keys: Any, update_len: int = 0, local: bool = False) -> None:
        now = time.monotonic_ns()
        if local:
            self.local_update_bytes += update_len
        for key in keys:
            if key in self.seen:
                continue
            self.seen[key] = now
            prefix = key.split("-", 1)[0]
            self.counts[prefix] = self.counts.get(prefix, 0) + 1
            if prefix == "lat":
                self.send(("seen", self.idx, key, now))

    def send(self, msg: Any) -> None:
        with SEND_LOCK:
            self.conn.send(msg)


async def serve_commands(conn: Connection, handle: Callable[[tuple[Any, ...]], Any]) -> None:
    """Read commands on a thread, run them on this loop, send each result back."""
    loop = asyncio.get_running_loop()
    done = asyncio.Event()

    def reader() -> None:
        while True:
            cmd = conn.recv()
            if cmd[0] == "exit":
                loop.call_soon_threadsafe(done.set)
                return
            fut = asyncio.run_coroutine_threadsafe(handle(cmd), loop)

            def reply(f: Any, name: str = cmd[0]) -> None:
                with SEND_LOCK:
                    conn.send((name, f.result()))

            fut.add_done_callback(reply)

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    await done.wait()
