"""YjsClient, a /yjs client's send side: eager when idle, in order, merged when behind.

Real aiohttp WebSockets on 127.0.0.1; real Yjs updates (pycrdt).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from aiohttp import web
from pycrdt import Doc, Map, YSyncMessageType, read_message

from edgestate.sync.yjs_client import YjsClient, sync_message
from tests.store.writer_hold import one_key_update

WAIT_S = 10.0


@contextlib.asynccontextmanager
async def connected() -> AsyncIterator[
    tuple[YjsClient, web.WebSocketResponse, aiohttp.ClientWebSocketResponse]
]:
    """A served client (its sender running and parked) and the socket reading it."""
    ready: asyncio.Future[tuple[YjsClient, web.WebSocketResponse]] = (
        asyncio.get_running_loop().create_future()
    )
    done = asyncio.Event()

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        client = YjsClient(ws, "yjs:1", 10_000)
        sender = asyncio.get_running_loop().create_task(client.run_sender())
        await asyncio.sleep(0)  # parked, waiting for work
        ready.set_result((client, ws))
        await done.wait()
        sender.cancel()
        await asyncio.wait([sender])
        await ws.close()
        return ws

    app = web.Application()
    app.add_routes([web.get("/", handler)])
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        async with aiohttp.ClientSession() as session:
            reader = await session.ws_connect(
                f"ws://127.0.0.1:{runner.addresses[0][1]}/", max_msg_size=0
            )
            client, ws = await asyncio.wait_for(ready, WAIT_S)
            try:
                yield client, ws, reader
            finally:
                done.set()
                await reader.close()
    finally:
        await runner.cleanup()


def _message(key: str, value: bytes = b"v") -> bytes:
    return sync_message(YSyncMessageType.SYNC_UPDATE, one_key_update(key, value))


def _keys(message: bytes) -> list[str]:
    doc: Doc[Any] = Doc()
    doc["root"] = root = Map[Any]()
    doc.apply_update(read_message(message[2:]))
    return sorted(root.keys())


async def test_an_idle_client_is_sent_a_message_in_the_offerers_turn() -> None:
    async with connected() as (client, ws, reader):
        client.offer(_message("first"))
        # No await between: a message left to the sender task would go after this.
        await ws.send_bytes(b"\x01direct")
        got = [(await reader.receive(timeout=WAIT_S)).data for _ in range(2)]
        assert _keys(got[0]) == ["first"] and got[1] == b"\x01direct"


async def test_behind_a_full_socket_messages_keep_their_order_and_queued_updates_merge() -> None:
    async with connected() as (client, _, reader):
        big = b"x" * (256 << 10)
        # The reader reads nothing yet: the socket fills, an eager send suspends
        # on the transport, and what follows queues behind it.
        for i in range(200):
            client.offer(_message(f"big{i:03d}", big))
        for i in range(100):
            client.offer(_message(f"small{i:03d}"))
        order: list[str] = []
        messages = 0
        async with asyncio.timeout(WAIT_S * 3):
            while len(order) < 300:
                msg = await reader.receive()
                assert msg.type == aiohttp.WSMsgType.BINARY, msg
                messages += 1
                order.extend(_keys(msg.data))
        expected = [f"big{i:03d}" for i in range(200)] + [f"small{i:03d}" for i in range(100)]
        assert order == expected  # in order, each once (a merged message's keys sorted)
        assert messages < 300  # runs of queued updates went out merged


async def test_a_kick_closes_after_what_was_sent_and_drops_what_queued() -> None:
    async with connected() as (client, _, reader):
        client.offer(_message("sent"))
        client.kick()
        client.offer(_message("after the kick"))
        first = await reader.receive(timeout=WAIT_S)
        assert _keys(first.data) == ["sent"]
        closing = await reader.receive(timeout=WAIT_S)
        assert closing.type == aiohttp.WSMsgType.CLOSE and reader.close_code == 1013


async def test_a_burst_offered_in_one_turn_costs_the_reader_two_messages() -> None:
    async with connected() as (client, _, reader):
        for i in range(100):
            client.offer(_message(f"k{i:03d}"))
        first = await reader.receive(timeout=WAIT_S)
        rest = await reader.receive(timeout=WAIT_S)
        assert _keys(first.data) == ["k000"]  # the turn's first, sent at once
        assert _keys(rest.data) == [f"k{i:03d}" for i in range(1, 100)]  # then merged
