"""Reference systems for ``scripts/bench_yjs.py``: what bounds the figures.

- ``bare relay, two processes``: the cheapest two-process path a y-websocket
  update can take in Python on aiohttp. Process A takes the writer, process B the
  readers, and A forwards every sync update to B over one WebSocket, which hands it
  to its clients. No CRDT, no store, no checks: each process answers a client's
  sync step 1 with an empty step 2 and forwards the rest as bytes. Any two-node
  system of ours pays at least this, plus what it does on top: checking the
  update, making it durable, relaying it on. On uvloop when installed, as the
  node is.
- ``pycrdt-websocket hub (no deflate, uvloop)``: the hub of ``bench_yjs`` on the
  loop our node runs on. A user of the hub could run it so too. Shown beside the
  others; the targets compare with the hub as it runs by default.

Only 127.0.0.1 is used. Not a product: benchmark scaffolding, never imported by
``edgestate``.
"""

from __future__ import annotations

import asyncio
import importlib.util
import multiprocessing as mp
from collections.abc import Iterator
from contextlib import contextmanager
from multiprocessing.connection import Connection
from typing import Any

# y-protocols: message sync (0), sync step 1 (0) / step 2 (1) / update (2).
_SYNC, _STEP1, _UPDATE = 0, 0, 2
# Sync step 2 carrying an empty update (varuint length 2, then 0x00 0x00).
_EMPTY_STEP2 = bytes([_SYNC, 1, 2, 0, 0])
_START_TIMEOUT_S = 30


def has_uvloop() -> bool:
    """Whether uvloop is installed (the node's loop then, by default)."""
    return importlib.util.find_spec("uvloop") is not None


def run(coro: Any) -> None:
    """Run ``coro`` on uvloop when installed, else asyncio's loop."""
    if has_uvloop():
        import uvloop

        uvloop.run(coro)
    else:
        asyncio.run(coro)


def _bare(conn: Connection, upstream: int | None) -> None:
    run(_serve_bare(conn, upstream))


async def _serve_bare(conn: Connection, upstream: int | None) -> None:
    import aiohttp
    from aiohttp import web

    clients: set[Any] = set()
    peers: set[Any] = set()
    tasks: set[asyncio.Task[None]] = set()

    def forward(data: bytes, origin: object) -> None:
        for ws in (*clients, *peers):
            if ws is not origin and not ws.closed:
                task = asyncio.ensure_future(ws.send_bytes(data))
                tasks.add(task)
                task.add_done_callback(tasks.discard)

    async def serve(request: web.Request, table: set[Any], on_message: Any) -> Any:
        ws = web.WebSocketResponse(max_msg_size=64 << 20, compress=False)
        await ws.prepare(request)
        table.add(ws)
        try:
            async for msg in ws:
                await on_message(ws, msg)
        finally:
            table.discard(ws)
        return ws

    async def from_client(ws: Any, msg: Any) -> None:
        data = msg.data
        if msg.type != aiohttp.WSMsgType.BINARY or len(data) < 2 or data[0] != _SYNC:
            return  # awareness and the rest: not part of the measurement
        if data[1] == _STEP1:
            await ws.send_bytes(_EMPTY_STEP2)
        elif data[1] == _UPDATE:
            forward(data, ws)

    async def from_peer(ws: Any, msg: Any) -> None:
        forward(msg.data, ws)

    async def client(request: web.Request) -> Any:
        return await serve(request, clients, from_client)

    async def peer(request: web.Request) -> Any:
        return await serve(request, peers, from_peer)

    app = web.Application()
    app.add_routes([web.get("/_peer", peer), web.get("/{room}", client)])
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    async with aiohttp.ClientSession() as session:
        link = None
        if upstream is not None:
            link = await session.ws_connect(f"http://127.0.0.1:{upstream}/_peer", compress=0)
            peers.add(link)

            async def pump() -> None:
                async for msg in link:
                    forward(msg.data, link)

            tasks.add(asyncio.ensure_future(pump()))
        conn.send(runner.addresses[0][1])
        await asyncio.get_running_loop().run_in_executor(None, conn.recv)  # until told to stop
        for task in list(tasks):
            task.cancel()
        if link is not None:
            await link.close()
    await runner.cleanup()


@contextmanager
def bare_relays() -> Iterator[tuple[str, str, list[int]]]:
    """Two bare relay processes, B linked to A: (writer URL, reader URL, pids)."""
    ctx = mp.get_context("spawn")
    procs, pipes, ports = [], [], []
    try:
        for _ in range(2):
            parent, child = mp.Pipe()
            proc = ctx.Process(target=_bare, args=(child, ports[0] if ports else None), daemon=True)
            proc.start()
            procs.append(proc)
            pipes.append(parent)
            if not parent.poll(_START_TIMEOUT_S):
                raise RuntimeError("a bare relay did not start")
            ports.append(parent.recv())
        yield f"ws://127.0.0.1:{ports[0]}", f"ws://127.0.0.1:{ports[1]}", [p.pid for p in procs]
    finally:
        for parent in pipes:
            parent.send("stop")
        for proc in procs:
            proc.join(10)
            if proc.is_alive():
                proc.kill()
