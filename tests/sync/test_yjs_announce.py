"""A Yjs update goes on before the store's writer has taken it: to the other
clients of its node, to peers, and from a peer to that peer's clients.

Real stores (LMDB), real sync daemons (mutual TLS on 127.0.0.1), real /yjs
endpoints over aiohttp, pycrdt documents as clients. Every writer involved is held
(tests.store.writer_hold), so "before the writer" is an order of events.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import aiohttp
from pycrdt import YSyncMessageType, read_message

from edgestate.store import Set, Store
from edgestate.sync.yjs import sync_message
from tests.store.writer_hold import WAIT_S, one_key_update, writer_held
from tests.sync.conftest import Nodes, eventually, settled
from tests.sync.yjs_app import tcp_url, yjs_app


@asynccontextmanager
async def clients(
    session: aiohttp.ClientSession, *urls: str
) -> AsyncIterator[list[aiohttp.ClientWebSocketResponse]]:
    """One connected client per URL, each past its sync step 1 (so registered)."""
    out = []
    try:
        for url in urls:
            ws = await session.ws_connect(url)
            msg = await ws.receive(timeout=WAIT_S)
            assert bytes(msg.data)[:2] == bytes([0, YSyncMessageType.SYNC_STEP1])
            out.append(ws)
        yield out
    finally:
        for ws in out:
            await ws.close()


async def updates_until(ws: aiohttp.ClientWebSocketResponse, marker: bytes) -> list[bytes]:
    """The update payloads ``ws`` is sent, up to and including one holding ``marker``."""
    got = []
    while True:
        msg = await ws.receive(timeout=WAIT_S)
        assert msg.type == aiohttp.WSMsgType.BINARY, msg
        data = bytes(msg.data)
        if data[0] == 0 and data[1] in (YSyncMessageType.SYNC_UPDATE, YSyncMessageType.SYNC_STEP2):
            payload = read_message(data[2:])
            got.append(payload)
            if marker in payload:
                return got


def _update_message(key: str, value: bytes) -> tuple[bytes, bytes]:
    update = one_key_update(key, value)
    return update, sync_message(YSyncMessageType.SYNC_UPDATE, update)


async def test_a_client_update_reaches_the_others_while_the_writer_is_held_and_only_once(
    tmp_path: Path,
) -> None:
    store = Store.open(tmp_path / "data")
    store.create_document("d")
    try:
        async with yjs_app(store) as (_, runner), aiohttp.ClientSession() as session:
            url = await tcp_url(runner, "/yjs/d")
            async with clients(session, url, url) as (author, reader):
                update, message = _update_message("k", b"AUTHORED")
                async with writer_held(store):
                    await author.send_bytes(message)
                    (first,) = await updates_until(reader, b"AUTHORED")
                    assert first == update and store.get("d", "k") is None
                await eventually(lambda: store.get("d", "k") == b"AUTHORED")
                # A local write reaches clients once committed, behind everything
                # committed before it: a second copy of the update would come first.
                await store.abatch([Set("d", "marker", b"MARKER")])
                later = await updates_until(reader, b"MARKER")
                assert all(b"AUTHORED" not in u for u in later)
    finally:
        store.close()


async def test_across_two_nodes_it_passes_both_held_writers_and_is_pushed_once(
    nodes: Nodes,
) -> None:
    a = await nodes.start()
    b = await nodes.start([a])
    for node in (a, b):
        node.store.create_document("d")
    await settled([a, b])
    async with AsyncExitStack() as stack:
        session = await stack.enter_async_context(aiohttp.ClientSession())
        _, runner_a = await stack.enter_async_context(yjs_app(a.store))
        _, runner_b = await stack.enter_async_context(yjs_app(b.store))
        url_a, url_b = await tcp_url(runner_a, "/yjs/d"), await tcp_url(runner_b, "/yjs/d")
        (author,) = await stack.enter_async_context(clients(session, url_a))
        (reader,) = await stack.enter_async_context(clients(session, url_b))
        pushed_before = a.daemon.stats.updates_pushed
        update, message = _update_message("k", b"AUTHORED")
        async with writer_held(a.store), writer_held(b.store):
            await author.send_bytes(message)
            (first,) = await updates_until(reader, b"AUTHORED")
            assert first == update
            assert a.store.get("d", "k") is None and b.store.get("d", "k") is None
        await eventually(lambda: b.store.get("d", "k") == b"AUTHORED")
        await eventually(lambda: a.store.get("d", "k") == b"AUTHORED")
        await settled([a, b])
        # The update, the hold's own update (a remote one too) and a's marker of
        # settled(): the update's committed event was not pushed a second time.
        assert a.daemon.stats.updates_pushed - pushed_before == 3
