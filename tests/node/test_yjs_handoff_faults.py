"""The /yjs handoff's edges, with the node's and the worker's sides in this process.

Real sockets, a real store and /yjs endpoint: what no worker sends is refused
and the node keeps taking handoffs; a worker whose node cannot take the
connection relays it instead, and the client never notices.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from pycrdt import Doc, Map, YSyncMessageType

from edgestate.node.workers import Adopter
from edgestate.node.workers.handoff import NOT_TAKEN, YjsHandoff, handoff_message
from edgestate.node.workers.proxy import NodeProxy
from edgestate.store import Store
from edgestate.sync.yjs import sync_message
from tests.sync.conftest import FAST_STORE
from tests.sync.conftest import eventually as until
from tests.sync.yjs_app import yjs_app

WAIT_S = 15


def _update(key: str) -> bytes:
    doc: Doc[Any] = Doc()
    doc["root"] = root = Map[Any]()
    root[key] = b"\x05"
    return doc.get_update()


@pytest.fixture
async def node_side(tmp_path: Path) -> AsyncIterator[tuple[Store, Adopter, str]]:
    """A store, its /yjs endpoint on a private unix socket, and an Adopter."""
    store = Store.open(tmp_path / "data", FAST_STORE)
    try:
        async with yjs_app(store) as (endpoint, runner):
            api_sock = str(tmp_path / "api.sock")
            await web.UnixSite(runner, api_sock).start()
            taker = Adopter(runner, str(tmp_path / "handoff.sock"), 1.0)
            await taker.start()
            try:
                yield store, taker, api_sock
            finally:
                await endpoint.close()  # its WebSockets end before the adopter's grace
                await taker.close()
    finally:
        store.close()


def _hand_now(path: str, message: bytes, fds: list[int]) -> bytes:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as link:
        link.settimeout(WAIT_S)
        link.connect(path)
        socket.send_fds(link, [message], fds)
        return link.recv(1)


async def _hand(path: str, message: bytes, fds: list[int]) -> bytes:
    """One handoff as a worker would send it; the node's one-byte answer."""
    return await asyncio.to_thread(_hand_now, path, message, fds)


@pytest.mark.timeout(60)
async def test_what_no_worker_sends_is_refused_and_handoffs_go_on(
    node_side: tuple[Store, Adopter, str],
) -> None:
    store, taker, _ = node_side
    # No socket with it; a socket that is not TCP; no socket at all; a length past the limit.
    assert await _hand(taker.path, handoff_message(b"GET /yjs/x HTTP/1.1\r\n\r\n"), []) == (
        NOT_TAKEN
    )
    ours, theirs = socket.socketpair()
    try:
        assert await _hand(
            taker.path, handoff_message(b"GET / HTTP/1.1\r\n\r\n"), [theirs.fileno()]
        ) == (NOT_TAKEN)
    finally:
        ours.close()
        theirs.close()
    read_end, write_end = os.pipe()
    try:
        message = handoff_message(b"GET /yjs/x HTTP/1.1\r\n\r\n")
        assert await _hand(taker.path, message, [read_end]) == NOT_TAKEN
    finally:
        os.close(read_end)
        os.close(write_end)
    tcp = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(tcp.getsockname())
    accepted, _ = tcp.accept()
    try:
        huge = (64 << 20).to_bytes(4, "big")
        assert await _hand(taker.path, huge, [accepted.fileno()]) == NOT_TAKEN
    finally:
        for s in (tcp, client, accepted):
            s.close()
    assert taker.adopted == 0
    # ...and a good one still works: the worker side of the handoff, for real.
    proxy = NodeProxy("/nonexistent/api.sock")  # never used: the node takes it
    handoff = YjsHandoff(str(Path(taker.path).with_name("api.sock")), proxy)
    url = await _worker(handoff)
    try:
        async with aiohttp.ClientSession() as session:
            ws = await session.ws_connect(f"{url[0]}/yjs/ok")
            await ws.send_bytes(sync_message(YSyncMessageType.SYNC_UPDATE, _update("ok")))
            await until(lambda: store.get("ok", "ok") == b"\x05")
            await ws.close()
        assert taker.adopted == 1 and handoff.handed_off == 1
    finally:
        await url[1].cleanup()
        await proxy.close()


async def _worker(handoff: YjsHandoff) -> tuple[str, web.AppRunner]:
    """A worker's /yjs route on 127.0.0.1, as workers/worker.py mounts it."""
    app = web.Application()
    app.add_routes([web.get("/yjs/{tail:.*}", handoff.handle)])
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return f"ws://127.0.0.1:{runner.addresses[0][1]}", runner


@pytest.mark.timeout(60)
async def test_a_worker_relays_when_the_node_cannot_take_the_connection(
    node_side: tuple[Store, Adopter, str],
) -> None:
    store, taker, api_sock = node_side
    os.unlink(taker.path)  # the node's handoff socket is gone: connect() fails
    proxy = NodeProxy(api_sock)
    handoff = YjsHandoff(api_sock, proxy)
    url, runner = await _worker(handoff)
    try:
        async with aiohttp.ClientSession() as session:
            ws = await session.ws_connect(f"{url}/yjs/relayed")
            await ws.send_bytes(sync_message(YSyncMessageType.SYNC_UPDATE, _update("r")))
            await until(lambda: store.get("relayed", "r") == b"\x05")
            await ws.close()
        assert handoff.handed_off == 0 and taker.adopted == 0
    finally:
        await runner.cleanup()
        await proxy.close()
