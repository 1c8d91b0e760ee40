"""The /yjs/{doc} endpoint against the real yjs + y-websocket packages under node."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from pycrdt import Doc, Map, YSyncMessageType, read_message

from edgestate.store import Set, Store, decode_state_vector
from edgestate.sync.yjs import STALE_REPLICA_CLOSE, YjsEndpoint, sync_message
from tests.sync.conftest import FAST_STORE, Nodes, eventually
from tests.sync.yjs_app import tcp_url, yjs_app

JS_DIR = Path(__file__).resolve().parent.parent / "js"


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[Store, str]]:
    store = Store.open(tmp_path / "data", FAST_STORE)
    try:
        async with yjs_app(store) as (_, runner):
            yield store, await tcp_url(runner)
    finally:
        store.close()


@contextlib.asynccontextmanager
async def js_yjs_client(
    js_client: Path, url: str, doc: str
) -> AsyncIterator[asyncio.subprocess.Process]:
    """The real Yjs client (tests/js/client.mjs) on ``doc``; stopped on exit."""
    proc = await asyncio.create_subprocess_exec(
        "node",
        str(js_client),
        url,
        doc,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        yield proc
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        async with asyncio.timeout(10):
            await proc.wait()


async def _line(proc: asyncio.subprocess.Process) -> dict[str, Any]:
    assert proc.stdout is not None
    raw = await proc.stdout.readline()
    assert raw, "the Yjs client exited early"
    parsed: dict[str, Any] = json.loads(raw)
    return parsed


@pytest.mark.timeout(60)
async def test_a_yjs_client_reads_writes_and_sees_node_changes(
    js_client: Path, served: tuple[Store, str]
) -> None:
    store, url = served
    store.create_document("shared")
    store.batch([Set("shared", "from-python", b"\x09\x08")])
    async with js_yjs_client(js_client, url, "shared") as proc, asyncio.timeout(30):
        synced = await _line(proc)
        # The client sees what the node had before it connected...
        assert synced == {"event": "synced", "root": {"from-python": [9, 8]}}
        # ...its own write lands durably in the store...
        await eventually(lambda: store.get("shared", "from-js") == b"\x01\x02\x03")
        # ...and a write made on the node afterwards reaches it.
        await store.abatch([Set("shared", "later", b"\x07")])
        seen = await _line(proc)
        assert seen == {"event": "seen", "key": "later", "value": [7]}


@pytest.mark.timeout(60)
async def test_a_yjs_client_on_one_node_syncs_with_writes_on_another(
    js_client: Path, nodes: Nodes
) -> None:
    a = await nodes.start()
    b = await nodes.start([a])
    a.store.create_document("shared")
    await a.store.abatch([Set("shared", "from-python", b"\x01")])
    await eventually(
        lambda: b.store.has_document("shared") and b.store.get("shared", "from-python") is not None
    )
    endpoint = YjsEndpoint(b.store)
    await endpoint.start()
    app = web.Application()
    app.add_routes(endpoint.routes())
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"ws://127.0.0.1:{runner.addresses[0][1]}/yjs"
    try:
        async with js_yjs_client(js_client, url, "shared") as proc, asyncio.timeout(30):
            assert (await _line(proc))["root"] == {"from-python": [1]}
            # The browser-side write travels: client -> node b -> peer sync -> node a.
            await eventually(lambda: a.store.get("shared", "from-js") == b"\x01\x02\x03")
            await a.store.abatch([Set("shared", "from-a", b"\x05")])
            assert await _line(proc) == {"event": "seen", "key": "from-a", "value": [5]}
    finally:
        await endpoint.close()
        await runner.cleanup()


async def test_a_truncated_message_closes_that_client_only(served: tuple[Store, str]) -> None:
    store, url = served
    store.create_document("d")
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(f"{url}/d") as good, session.ws_connect(f"{url}/d") as bad:
            await bad.send_bytes(b"\x00\x00")  # sync step 1 with no length: found in review
            msg = await bad.receive(timeout=10)
            while msg.type == aiohttp.WSMsgType.BINARY:  # our own step 1 may come first
                msg = await bad.receive(timeout=10)
            assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
            assert bad.close_code == 1002
            await store.abatch([Set("d", "k", b"v")])
            while True:  # the other client is still served: it gets the update
                seen = await good.receive(timeout=10)
                assert seen.type == aiohttp.WSMsgType.BINARY
                if seen.data[:2] == b"\x00\x02":  # sync message, update
                    break


async def test_a_yjs_client_behind_collected_history_is_told_to_start_afresh(
    served: tuple[Store, str],
) -> None:
    store, url = served
    store.create_document("d")
    for r in range(200):
        store.batch([Set("d", f"k{k}", f"{r}".encode()) for k in range(3)])
    stale = Doc(client_id=777)  # a browser tab that then went offline
    stale.get("root", type=Map)
    stale.apply_update(store.diff("d"))
    for r in range(200, 400):
        store.batch([Set("d", f"k{k}", f"{r}".encode()) for k in range(3)])
    store.set_gc_frontier("d", decode_state_vector(store.state_vector("d")))
    store.compact("d")
    assert store.gc_status("d").collected_items > 0
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(f"{url}/d") as ws:
            await ws.send_bytes(sync_message(YSyncMessageType.SYNC_STEP1, stale.get_state()))
            msg = await ws.receive(timeout=10)
            while msg.type == aiohttp.WSMsgType.BINARY:  # our own step 1 may come first
                msg = await ws.receive(timeout=10)
            assert ws.close_code == STALE_REPLICA_CLOSE
        # A fresh Y.Doc syncs fine, and gets the current values.
        fresh = Doc(client_id=778)
        root = fresh.get("root", type=Map)
        async with session.ws_connect(f"{url}/d") as ws:
            await ws.send_bytes(sync_message(YSyncMessageType.SYNC_STEP1, fresh.get_state()))
            while "k0" not in root:
                msg = await ws.receive(timeout=10)
                assert msg.type == aiohttp.WSMsgType.BINARY
                if msg.data[:2] == b"\x00\x01":  # sync step 2: what we lack
                    fresh.apply_update(read_message(msg.data[2:]))
    assert root["k0"] == b"399"


@pytest.mark.timeout(60)
async def test_the_real_yjs_client_takes_a_garbage_collected_document(
    js_client: Path, served: tuple[Store, str]
) -> None:
    """The rewritten snapshot (GC ranges, re-hung items) decodes in Yjs itself, not
    only in Yrs: the JS client sees every value and its writes still integrate."""
    store, url = served
    store.create_document("gcd")
    for r in range(300):
        store.batch([Set("gcd", f"k{k}", bytes([r % 256, k])) for k in range(5)])
    store.set_gc_frontier("gcd", decode_state_vector(store.state_vector("gcd")))
    store.compact("gcd")
    assert store.gc_status("gcd").collected_items > 1000
    expected = {f"k{k}": [299 % 256, k] for k in range(5)}
    async with js_yjs_client(js_client, url, "gcd") as proc, asyncio.timeout(30):
        assert await _line(proc) == {"event": "synced", "root": expected}
        await eventually(lambda: store.get("gcd", "from-js") == b"\x01\x02\x03")
        # An overwrite made on the node after the collection reaches it too.
        await store.abatch([Set("gcd", "k3", b"\x05")])
        assert await _line(proc) == {"event": "seen", "key": "k3", "value": [5]}
