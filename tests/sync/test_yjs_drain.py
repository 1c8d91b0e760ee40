"""The /yjs endpoint's hand-over from the store's writer thread to the event loop.

A group commit's events reach the loop in one wakeup and go out in one turn,
merged per client; a loop so far behind that events pile up past
MAX_PENDING_EVENTS drops them and closes its clients, which resync on reconnect.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import WSCloseCode
from pycrdt import Doc, Map, YSyncMessageType, read_message

from edgestate.store import ChangeEvent, Store
from edgestate.sync.yjs import MAX_PENDING_EVENTS, YjsEndpoint, sync_message
from tests.sync.conftest import FAST_STORE
from tests.sync.yjs_app import tcp_url, yjs_app

WAIT_S = 15


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[Store, YjsEndpoint, str]]:
    store = Store.open(tmp_path / "data", FAST_STORE)
    try:
        async with yjs_app(store) as (endpoint, runner):
            yield store, endpoint, await tcp_url(runner)
    finally:
        store.close()


def _updates(count: int) -> list[bytes]:
    doc: Doc[Any] = Doc()
    doc["root"] = root = Map[Any]()
    out: list[bytes] = []
    doc.observe(lambda event: out.append(event.update))
    for i in range(count):
        root[f"k{i}"] = b"\x01"
    return out


async def _synced(session: aiohttp.ClientSession, url: str) -> aiohttp.ClientWebSocketResponse:
    ws = await session.ws_connect(url)
    await ws.send_bytes(sync_message(YSyncMessageType.SYNC_STEP1, b"\x00"))
    async with asyncio.timeout(WAIT_S):
        while True:
            msg = await ws.receive()
            if msg.data[1] == YSyncMessageType.SYNC_STEP2:
                return ws


@pytest.mark.timeout(60)
async def test_events_from_the_writer_thread_arrive_merged_in_one_message(
    served: tuple[Store, YjsEndpoint, str],
) -> None:
    store, endpoint, url = served
    store.create_document("d")
    updates = _updates(50)
    async with aiohttp.ClientSession() as session:
        ws = await _synced(session, f"{url}/d")

        def publish() -> None:  # one commit per event, off the loop
            for update in updates:
                endpoint._from_writer([ChangeEvent("d", frozenset(), update, "peer:x")])

        publisher = threading.Thread(target=publish, daemon=True)
        publisher.start()
        try:
            # The loop is held until every event is queued: they are drained together.
            publisher.join(WAIT_S)
            assert not publisher.is_alive()
            async with asyncio.timeout(WAIT_S):
                msg = await ws.receive()
        finally:
            publisher.join(WAIT_S)
        assert msg.data[1] == YSyncMessageType.SYNC_UPDATE
        seen: Doc[Any] = Doc()
        seen["root"] = root = Map[Any]()
        seen.apply_update(read_message(msg.data[2:]))
        assert sorted(root.keys()) == sorted(f"k{i}" for i in range(50))
        await ws.close()


@pytest.mark.timeout(60)
async def test_a_loop_far_behind_drops_the_events_and_its_clients_resync(
    served: tuple[Store, YjsEndpoint, str],
) -> None:
    store, endpoint, url = served
    store.create_document("d")
    update = _updates(1)[0]
    async with aiohttp.ClientSession() as session:
        ws = await _synced(session, f"{url}/d")
        for _ in range(MAX_PENDING_EVENTS + 1):  # the loop never turns meanwhile
            endpoint._from_writer([ChangeEvent("d", frozenset(), update, "peer:x")])
        async with asyncio.timeout(WAIT_S):
            while (msg := await ws.receive()).type == aiohttp.WSMsgType.BINARY:
                pass  # what was sent before the drain
        assert msg.type == aiohttp.WSMsgType.CLOSE
        assert msg.data == WSCloseCode.TRY_AGAIN_LATER
        # A reconnecting client syncs as any new one does.
        again = await _synced(session, f"{url}/d")
        await again.close()
