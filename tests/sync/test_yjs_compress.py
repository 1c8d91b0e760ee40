"""/yjs does not deflate messages unless asked: a Yjs update is a few dozen bytes
of varints, and compressing each at both ends cost more than its trip
(scripts/bench_yjs.py). A client that offers permessage-deflate is answered
without it, and still syncs; ``YjsEndpoint(compress=True)`` accepts the offer."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest
from pycrdt import YSyncMessageType

from edgestate.store import Store
from edgestate.sync.yjs import sync_message
from tests.sync.conftest import FAST_STORE
from tests.sync.yjs_app import one_key_update, tcp_url, until_key, yjs_app

pytestmark = pytest.mark.timeout(60)


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
                await writer.send_bytes(
                    sync_message(YSyncMessageType.SYNC_UPDATE, one_key_update("k"))
                )
                await until_key(reader, "k")
                await writer.close()
                await reader.close()
    finally:
        store.close()
