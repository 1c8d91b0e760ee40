"""The Channel contract (edgestate.sync.channel), run against both implementations:
the aiohttp WebSocket over a real 127.0.0.1 socket, and the in-memory pair."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from edgestate.errors import PeerGoneError, UnexpectedFrameError
from edgestate.sync import Channel, memory_channel_pair
from edgestate.sync.channel import CloseCode
from edgestate.sync.websocket import WebSocketChannel

pytestmark = pytest.mark.timeout(30)

Pair = tuple[Channel, Channel]


@contextlib.asynccontextmanager
async def _websocket_pair() -> AsyncIterator[tuple[Pair, aiohttp.ClientWebSocketResponse]]:
    accepted: asyncio.Future[WebSocketChannel] = asyncio.get_running_loop().create_future()
    done = asyncio.Event()

    async def handler(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        accepted.set_result(WebSocketChannel(ws))
        await done.wait()
        return ws

    app = web.Application()
    app.add_routes([web.get("/c", handler)])
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    session = aiohttp.ClientSession()
    try:
        async with asyncio.timeout(10):
            ws = await session.ws_connect(f"ws://127.0.0.1:{port}/c")
            server = await accepted
        yield (WebSocketChannel(ws), server), ws
    finally:
        done.set()
        await session.close()
        await runner.cleanup()


@pytest.fixture(params=["memory", "websocket"])
async def pair(request: pytest.FixtureRequest) -> AsyncIterator[Pair]:
    if request.param == "memory":
        yield memory_channel_pair()
        return
    async with _websocket_pair() as (channels, _ws):
        yield channels


async def test_bytes_arrive_whole_and_in_order_both_ways(pair: Pair) -> None:
    a, b = pair
    async with asyncio.timeout(5):
        for i in range(20):
            await a.send(bytes([i]) * (i + 1))
        await b.send(b"")
        await b.send(b"\x00" * 70_000)
        assert [await b.receive() for _ in range(20)] == [bytes([i]) * (i + 1) for i in range(20)]
        assert await a.receive() == b""
        assert await a.receive() == b"\x00" * 70_000
    assert not a.closed and not b.closed


async def test_the_other_side_sees_the_close_code_and_reason(pair: Pair) -> None:
    a, b = pair
    async with asyncio.timeout(5):
        await b.send(b"before")
        # A WebSocket close waits for the other side's answer, which its reader gives.
        closing = asyncio.ensure_future(b.close(CloseCode.POLICY_VIOLATION, "refused: not ours"))
        assert await a.receive() == b"before"
        with pytest.raises(PeerGoneError):
            await a.receive()
        await closing
    assert a.closed and b.closed
    assert a.close_code == CloseCode.POLICY_VIOLATION
    assert a.close_reason == "refused: not ours"


async def test_receive_and_send_after_close(pair: Pair) -> None:
    a, b = pair
    async with asyncio.timeout(5):
        closing = asyncio.ensure_future(a.close(CloseCode.GOING_AWAY, "bye"))
        with pytest.raises(PeerGoneError):
            await b.receive()
        await closing
        for channel in (a, b, a, b):
            with pytest.raises(PeerGoneError):
                await channel.receive()
        for channel in (a, b):
            with pytest.raises(ConnectionError):
                await channel.send(b"late")
        await a.close(CloseCode.OK, "again")  # closing twice is harmless
    assert b.close_code == CloseCode.GOING_AWAY and b.close_reason == "bye"


async def test_a_close_reason_is_cut_to_what_a_websocket_carries(pair: Pair) -> None:
    a, b = pair
    async with asyncio.timeout(5):
        closing = asyncio.ensure_future(a.close(CloseCode.PROTOCOL_ERROR, "x" * 500))
        with pytest.raises(PeerGoneError):
            await b.receive()
        await closing
    assert b.close_code == CloseCode.PROTOCOL_ERROR
    assert b.close_reason == "x" * 120


async def test_a_text_message_on_a_websocket_is_unexpected() -> None:
    async with _websocket_pair() as ((_client, server), ws):
        async with asyncio.timeout(5):
            await ws.send_str("hello")
            with pytest.raises(UnexpectedFrameError):
                await server.receive()
