"""bench_sync.py's baseline: pycrdt-websocket, one server process (a WebsocketServer
room behind aiohttp) and one process per pycrdt Doc client, counting payload bytes."""

from __future__ import annotations

import asyncio
import contextlib
import time
from multiprocessing.connection import Connection
from typing import Any

from bench_sync_common import CATCHUP_BATCH, PAYLOAD, Observer, serve_commands


class Channel:
    """pycrdt's Channel over an aiohttp WebSocket, counting payload bytes."""

    def __init__(self, ws: Any, path: str) -> None:
        self.ws = ws
        self._path = path
        self.sent = 0
        self.received = 0

    @property
    def path(self) -> str:
        return self._path

    def __aiter__(self) -> Channel:
        return self

    async def __anext__(self) -> bytes:
        return await self.recv()

    async def send(self, message: bytes) -> None:
        import aiohttp

        self.sent += len(message)
        # A client that left: the hub's broadcast to it ends here, not in a
        # traceback per room at every teardown (its own handling re-raises).
        with contextlib.suppress(aiohttp.ClientConnectionResetError):
            await self.ws.send_bytes(message)

    async def recv(self) -> bytes:
        import aiohttp

        msg = await self.ws.receive()
        if msg.type != aiohttp.WSMsgType.BINARY:
            raise StopAsyncIteration
        self.received += len(msg.data)
        data: bytes = msg.data
        return data


def baseline_server(conn: Connection) -> None:
    asyncio.run(_baseline_server(conn))


async def _baseline_server(conn: Connection) -> None:
    from aiohttp import web
    from pycrdt.websocket import WebsocketServer

    channels: list[Channel] = []
    async with WebsocketServer(auto_clean_rooms=False) as server:

        async def handler(request: web.Request) -> web.WebSocketResponse:
            ws = web.WebSocketResponse(max_msg_size=64 << 20)
            await ws.prepare(request)
            channel = Channel(ws, request.path)
            channels.append(channel)
            await server.serve(channel)
            return ws

        app = web.Application()
        app.add_routes([web.get("/{room}", handler)])
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        port = runner.addresses[0][1]

        async def handle(cmd: tuple[Any, ...]) -> Any:
            if cmd[0] == "port":
                return port
            if cmd[0] == "bytes":
                return sum(c.sent for c in channels), sum(c.received for c in channels)
            raise ValueError(cmd[0])

        try:
            await serve_commands(conn, handle)
        finally:
            await runner.cleanup()


def baseline_client(idx: int, port: int, conn: Connection) -> None:
    asyncio.run(_baseline_client(idx, port, conn))


async def _baseline_client(idx: int, port: int, conn: Connection) -> None:
    import aiohttp
    from pycrdt import Doc, Map, Provider

    doc: Doc = Doc()
    root = doc.get("root", type=Map)
    obs = Observer(conn, idx)

    def on_change(event: Any) -> None:
        obs.saw(list(event.keys))

    root.observe(on_change)
    session = aiohttp.ClientSession()
    state: dict[str, Any] = {}

    async def provide(ready: asyncio.Event, stop: asyncio.Event) -> None:
        # anyio task groups must be entered and left by one task: this one.
        ws = await session.ws_connect(f"ws://127.0.0.1:{port}/bench", max_msg_size=64 << 20)
        channel = Channel(ws, "/bench")
        state["channel"] = channel
        async with Provider(doc, channel) as provider:
            await provider.synced.wait()
            ready.set()
            await stop.wait()
            await ws.close()

    async def connect() -> None:
        ready, stop = asyncio.Event(), asyncio.Event()
        task = asyncio.get_running_loop().create_task(provide(ready, stop))
        async with asyncio.timeout(60):
            await ready.wait()
        state.update(task=task, stop=stop)

    async def disconnect() -> None:
        state["stop"].set()
        with contextlib.suppress(Exception):
            await state["task"]

    await connect()

    async def handle(cmd: tuple[Any, ...]) -> Any:
        kind = cmd[0]
        if kind in ("ready", "peers", "wait_connected"):
            return None
        if kind == "write":
            t0 = time.monotonic_ns()
            root[cmd[1]] = PAYLOAD
            return t0
        if kind == "flood":
            prefix, count, window = cmd[1], cmd[2], cmd[3]
            for i in range(count):
                root[f"{prefix}-{idx}-{i}"] = PAYLOAD
                if i % window == window - 1:
                    await asyncio.sleep(0)  # let the provider send
            return None
        if kind == "bulk":
            for start in range(0, cmd[2], CATCHUP_BATCH):
                with doc.transaction():
                    for i in range(start, min(cmd[2], start + CATCHUP_BATCH)):
                        root[f"{cmd[1]}-{i}"] = PAYLOAD
                await asyncio.sleep(0)
            return 0
        if kind == "count":
            return obs.counts.get(cmd[1], 0)
        if kind == "times":
            return {k: obs.seen.get(k) for k in cmd[1]}
        if kind == "bytes":
            return state["channel"].sent, state["channel"].received
        if kind == "stop_sync":
            await disconnect()
            return None
        if kind == "start_sync":
            await connect()
            return None
        raise ValueError(kind)

    # Local writes fire the observer too: "visible" on the writer is immediate.
    try:
        await serve_commands(conn, handle)
    finally:
        await disconnect()
        await session.close()


def pycrdt_websocket_version() -> str:
    """The installed pycrdt-websocket, printed beside its figures."""
    from importlib.metadata import version

    return version("pycrdt-websocket")
