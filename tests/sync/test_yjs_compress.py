"""/yjs does not deflate messages unless asked: a Yjs update is a few dozen bytes
of varints, and compressing each at both ends cost more than its trip
(scripts/bench_yjs.py). A client that offers permessage-deflate is answered
without it, and still syncs; ``YjsEndpoint(compress=True)`` accepts the offer."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pycrdt import Doc, Map, YSyncMessageType, read_message

from edgestate.store import Store
from edgestate.sync.yjs import sync_message
from tests.sync.conftest import FAST_STORE
from tests.sync.yjs_app import tcp_url, yjs_app

pytestmark = pytest.mark.timeout(60)


def _update(key: str) -> bytes:
    doc: Doc[Any] = Doc()
    doc["root"] = root = Map[Any]()
    root[key] = b"v"
    return doc.get_update()


@pytest.mark.parametrize("compress", [False, True], ids=["default", "asked"])
async def test_deflate_only_when_asked_and_clients_sync_either_way(
    tmp_path: Path, compress: bool
) -> None:
    store = Store.open(tmp_path / "store", FAST_STORE)
    try:
        async with yjs_app(store, compress=compress) as (_endpoint, runner):
            url = await tcp_url(runner, "/yjs/d")
            async with aiohttp.ClientSession() as session:
                # aiohttp's client offers permessage-deflate (compress=15), as
                # y-websocket's `ws` does.
                writer = await session.ws_connect(url, compress=15)
                reader = await session.ws_connect(url, compress=15)
                for ws in (writer, reader):
                    assert ws.compress == (15 if compress else 0)
                await writer.send_bytes(sync_message(YSyncMessageType.SYNC_UPDATE, _update("k")))
                seen: Doc[Any] = Doc()
                seen["root"] = root = Map[Any]()
                async with asyncio.timeout(30):
                    while "k" not in root:
                        msg = await reader.receive()
                        assert msg.type == aiohttp.WSMsgType.BINARY, msg
                        if msg.data[0] == 0 and msg.data[1] != YSyncMessageType.SYNC_STEP1:
                            seen.apply_update(read_message(msg.data[2:]))
                await writer.close()
                await reader.close()
    finally:
        store.close()
