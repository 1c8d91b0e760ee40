#!/usr/bin/env python3
"""A lower bound for the worker design: the skeleton `scripts/bench_node.py` runs
beside the floor and the real node (issue 11).

The architecture `api.workers = 2` prescribes with everything but the essentials
removed: 2 worker processes, each an aiohttp server on the same port
(``SO_REUSEPORT``), each request's write sent as one msgpack message over a
socketpair to the one writer process, which does the same durable
:class:`edgestate.store.Store` write as the floor (group commit, fsync) and
answers after it; the worker answers HTTP then. No admission, no metrics, no
request ids, no proxy, no heartbeat. Both sides batch per loop turn as the real
link does (``Outbox``, ``FrameReader``, ``WriteQueue`` in edgestate.node.workers):
one socket write per turn each way, every write of a turn queued to the store in
one ``Store.abatches`` hand-off. Framing is cheaper than the real link's: a bare
msgpack stream (``msgpack.Unpacker``, in C) of ``[id, ops]`` lists, not length
prefixed maps.

``--wasm`` (skeleton-w2-wasm) also runs kv-echo per request through edgestate's
own sandbox (``Runtime.run``: a fresh wasmtime store with fuel, epoch deadline and
memory limit from the module's ``InstancePre``, the 5 host calls, the staged
write), inline on the worker's loop: no guest thread, no admission. ``--arun``
(skeleton-w2-arun) runs it the real worker's way instead, ``Runtime.arun``:
admission slot, a guest thread (``GuestThreads``), the verdict on the budget.

    python scripts/bench_skeleton.py DATA PORT [--wasm|--arun]   (the writer; prints "ready")
"""

from __future__ import annotations

import asyncio
import functools
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgpack

GUEST = Path(__file__).resolve().parents[1] / "edgestate/guest"
KV_ECHO = GUEST / "prebuilt/kv_echo.wasm"
WORKERS = 2
ROLE = "skeleton-worker"  # in a worker's command line: how bench_node finds them


# --- the writer process ----------------------------------------------------------


class WriterLink(asyncio.Protocol):
    """The writer's end of one worker's socket: ``[id, ops]`` in, ``[id, ok]`` out."""

    def __init__(self, queue: TurnQueue, closed: asyncio.Future[None]) -> None:
        self._queue = queue
        self._closed = closed
        self._unpacker = msgpack.Unpacker(raw=False)
        self._out: list[bytes] = []
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # uvloop's is no subclass

    def data_received(self, data: bytes) -> None:
        self._unpacker.feed(data)
        self._queue.add(self, list(self._unpacker))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._closed.done():
            self._closed.set_result(None)

    def answer(self, id_: int, future: asyncio.Future[Any]) -> None:
        """A done callback: queue ``[id, ok]``, written at the end of this turn."""
        if not self._out:
            asyncio.get_running_loop().call_soon(self._flush)
        self._out.append(msgpack.packb([id_, future.exception() is None]))

    def _flush(self) -> None:
        out, self._out = self._out, []
        assert self._transport is not None
        self._transport.write(b"".join(out))


class TurnQueue:
    """Every write the links read in one loop turn, queued to the store at its end
    in one hand-off (as the node's ``WriteQueue``)."""

    def __init__(self, store: Any) -> None:
        from edgestate.store import Set

        self._store = store
        self._set = Set
        self._turn: list[tuple[WriterLink, list[Any]]] = []
        self.closed = False

    def add(self, link: WriterLink, messages: list[Any]) -> None:
        if messages:
            if not self._turn:
                asyncio.get_running_loop().call_soon(self._submit)
            self._turn.extend((link, m) for m in messages)

    def _submit(self) -> None:
        turn, self._turn = self._turn, []
        set_ = self._set
        if self.closed:
            return  # stopping: the workers are gone
        futures = self._store.abatches(
            [[set_(doc, key, value) for _, doc, key, value in m[1]] for _, m in turn]
        )
        for (link, message), future in zip(turn, futures, strict=True):
            future.add_done_callback(functools.partial(link.answer, message[0]))


def writer(data: str, port: int, mode: str) -> None:
    """The node's part: the store, the workers, their writes until SIGTERM."""
    sys.setswitchinterval(0.0002)  # the same GIL setting `edgestate node` uses
    from edgestate.store import Store

    store = Store.open(data)
    store.create_document("kv")
    children: list[subprocess.Popen[bytes]] = []
    links: list[socket.socket] = []
    try:
        for _ in range(WORKERS):
            mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            argv = [sys.executable, __file__, ROLE, data, str(port), str(theirs.fileno())]
            argv += [mode] if mode else []
            children.append(subprocess.Popen(argv, pass_fds=(theirs.fileno(),)))
            theirs.close()
            links.append(mine)
        for mine in links:
            assert mine.recv(5) == b"ready"  # listening; nothing else comes before
        queue = TurnQueue(store)
        try:
            asyncio.run(_serve(queue, links))
        finally:
            queue.closed = True
    finally:
        for child in children:
            child.terminate()
        for child in children:
            child.wait()
        store.close()


async def _serve(queue: TurnQueue, links: list[socket.socket]) -> None:
    loop = asyncio.get_running_loop()
    closed: list[asyncio.Future[None]] = []
    for mine in links:
        done: asyncio.Future[None] = loop.create_future()
        await loop.create_unix_connection(lambda d=done: WriterLink(queue, d), sock=mine)
        closed.append(done)
    print("ready", flush=True)
    stop: asyncio.Future[None] = loop.create_future()
    loop.add_signal_handler(signal.SIGTERM, lambda: stop.done() or stop.set_result(None))
    await asyncio.wait([stop, *closed], return_when=asyncio.FIRST_COMPLETED)


# --- a worker process --------------------------------------------------------------


class WorkerLink(asyncio.Protocol):
    """A worker's end: one write per loop turn of every ``[id, ops]`` queued."""

    def __init__(self, gone: asyncio.Event) -> None:
        self._gone = gone
        self._unpacker = msgpack.Unpacker(raw=False)
        self._pending: dict[int, asyncio.Future[bool]] = {}
        self._out: list[bytes] = []
        self._next = 0
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # uvloop's is no subclass

    def connection_lost(self, exc: Exception | None) -> None:
        self._gone.set()

    def data_received(self, data: bytes) -> None:
        self._unpacker.feed(data)
        pending = self._pending
        for id_, ok in self._unpacker:
            pending.pop(id_).set_result(ok)

    def commit(self, ops: list[list[Any]]) -> asyncio.Future[bool]:
        """Send one request's writes; the future is the writer's answer, after fsync."""
        self._next += 1
        future = self._pending[self._next] = asyncio.get_running_loop().create_future()
        if not self._out:
            asyncio.get_running_loop().call_soon(self._flush)
        self._out.append(msgpack.packb([self._next, ops]))
        return future

    def _flush(self) -> None:
        out, self._out = self._out, []
        assert self._transport is not None
        self._transport.write(b"".join(out))


class KvEcho:
    """kv-echo per request through edgestate's own sandbox (raw wasmtime bindings:
    a fresh store with fuel, epoch deadline and memory limit, instantiated from the
    ``InstancePre``, the 5 host calls), run inline on the loop holding the GIL:
    what the real worker's guest threads run, without the threads and admission.
    (wasmtime-py's high-level ``Func`` calls cost ~500 us here: not the cheapest.)"""

    def __init__(self, data: str) -> None:
        import json

        from edgestate.node.workers.protocol import encode_ops
        from edgestate.runtime import Runtime, RuntimeConfig, TrustPolicy, generate_key, sign_module
        from edgestate.runtime.policy import public_key_text
        from edgestate.runtime.signing import raw_public_key
        from edgestate.store import Store

        key = generate_key()
        limits = {
            "fuel": 1_000_000,
            "wall_time_ms": 100,
            "memory_pages": 32,
            "max_output_bytes": 4096,
        }
        publisher = {
            "name": "bench",
            "public_key": public_key_text(raw_public_key(key)),
            "documents": {"read": ["*"], "write": ["*"]},
            "limits": limits,
        }
        policy = TrustPolicy.from_dict({"version": 1, "publishers": [publisher]})
        self._store = Store.open(data, readonly=True)  # reads go to LMDB, as a worker's
        cache = Path(f"{data}-cache-{os.getpid()}")  # one per worker: no shared writes
        self._runtime = Runtime(self._store, policy, RuntimeConfig(cache_dir=cache))
        wasm, man = KV_ECHO.read_bytes(), (GUEST / "examples/kv_echo.manifest.json").read_bytes()
        self._runtime.load(wasm, man, sign_module(wasm, man, key))
        self._name = json.loads(man)["name"]
        self._encode = encode_ops

    def run(self, body: bytes) -> tuple[bytes, list[list[Any]]]:
        """The output and the staged writes (wire form) of one invocation."""
        execution = self._runtime.run(self._name, body)
        return execution.output, self._encode(execution.ops)

    def close(self) -> None:
        """Stop the invocation threads and the epoch ticker; close the store."""
        self._runtime.close()
        self._store.close()

    async def arun(self, body: bytes) -> tuple[bytes, list[list[Any]]]:
        """:meth:`run` the real worker's way: admitted, on the invocation threads."""
        execution = await self._runtime.arun(self._name, body)
        return execution.output, self._encode(execution.ops)


async def worker(data: str, port: int, fd: int, mode: str) -> None:
    from aiohttp import web

    loop = asyncio.get_running_loop()
    gone = asyncio.Event()
    link_sock = socket.socket(fileno=fd)
    _, link = await loop.create_unix_connection(lambda: WorkerLink(gone), sock=link_sock)
    guest = KvEcho(data) if mode else None
    threads = mode == "--arun"

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        if guest is None:
            key, _, value = body.partition(b"=")
            output, ops = value, [[0, "kv", key.decode(), value]]
        elif threads:
            output, ops = await guest.arun(body)
        else:
            output, ops = guest.run(body)
        if not await link.commit(ops):
            raise web.HTTPInternalServerError(text="write refused")
        return web.Response(body=output)

    app = web.Application()
    app.add_routes([web.post("/v1/invoke/{m}", handle)])
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    listener.bind(("127.0.0.1", port))
    await web.SockSite(runner, listener).start()
    link_sock.send(b"ready")  # before the writer reads the link: nothing else yet
    loop.add_signal_handler(signal.SIGTERM, gone.set)
    await gone.wait()
    await runner.cleanup()
    if guest is not None:
        guest.close()


def main() -> None:
    mode = next((a for a in sys.argv if a in ("--wasm", "--arun")), "")
    args = [a for a in sys.argv[1:] if a != mode]
    if args[0] == ROLE:
        try:
            import uvloop  # the node's workers' default loop when installed

            runner: Any = uvloop.run
        except ImportError:
            runner = asyncio.run
        runner(worker(args[1], int(args[2]), int(args[3]), mode))
    else:
        writer(args[0], int(args[1]), mode)


if __name__ == "__main__":
    main()
