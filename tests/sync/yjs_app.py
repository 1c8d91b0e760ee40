"""The /yjs endpoint of a real store served by aiohttp, for tests that drive it
without a node (real sockets: a TCP or unix site is the caller's choice)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from aiohttp import web
from pycrdt import Doc, Map, YSyncMessageType, read_message

from edgestate.store import Store
from edgestate.sync.yjs import YjsEndpoint


@contextlib.asynccontextmanager
async def yjs_app(
    store: Store, *, compress: bool = False
) -> AsyncIterator[tuple[YjsEndpoint, web.AppRunner]]:
    """``store``'s endpoint in a set-up runner; on exit the endpoint closes its
    clients first, then the runner stops (the node's order). The store stays open."""
    endpoint = YjsEndpoint(store, compress=compress)
    await endpoint.start()
    app = web.Application()
    app.add_routes(endpoint.routes())
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    try:
        yield endpoint, runner
    finally:
        await endpoint.close()
        await runner.cleanup()


async def tcp_url(runner: web.AppRunner, path: str = "/yjs") -> str:
    """Serve ``runner`` on a free loopback port; the ws:// URL of ``path`` there."""
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return f"ws://127.0.0.1:{runner.addresses[0][1]}{path}"


def one_key_update(key: str, value: bytes = b"v") -> bytes:
    """A Yjs v1 update setting ``key`` of the root map (as a client's write)."""
    doc: Doc[Any] = Doc()
    doc["root"] = root = Map[Any]()
    root[key] = value
    return doc.get_update()


async def until_key(reader: aiohttp.ClientWebSocketResponse, key: str, seconds: float = 30) -> None:
    """Read ``reader``'s sync messages until its copy of the root map holds ``key``."""
    seen: Doc[Any] = Doc()
    seen["root"] = root = Map[Any]()
    async with asyncio.timeout(seconds):
        while key not in root:
            msg = await reader.receive()
            assert msg.type == aiohttp.WSMsgType.BINARY, msg
            if msg.data[0] == 0 and msg.data[1] != YSyncMessageType.SYNC_STEP1:
                seen.apply_update(read_message(msg.data[2:]))
