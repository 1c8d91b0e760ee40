"""A Yjs client's update reaches the other clients while its commit is being fsynced.

Real LMDB (durability sync), real sockets on 127.0.0.1, pycrdt documents as
clients. The writer thread is held between accepting an update and committing
it (by an early change listener that waits), so "before the commit" is an order
of events, not a race against the disk.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import WSCloseCode
from pycrdt import Doc, Map, YSyncMessageType, read_message

from edgestate.store import ChangeEvent, Store, StoreConfig
from edgestate.store.changes import ChangeHub
from edgestate.sync.yjs import sync_message
from tests.sync.conftest import eventually
from tests.sync.yjs_app import tcp_url, yjs_app

# Bound on every wait here: a failure ends the test instead of hanging it.
WAIT_S = 10.0


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[Store, str]]:
    store = Store.open(tmp_path / "data", StoreConfig())  # durability sync: fsync per commit
    store.create_document("d")
    try:
        async with yjs_app(store) as (_, runner):
            yield store, await tcp_url(runner, "/yjs/d")
    finally:
        store.close()


def _update(key: str, value: bytes) -> bytes:
    doc: Doc = Doc()
    doc["root"] = root = Map()
    root[key] = value
    return doc.get_update()


async def _next_update(ws: aiohttp.ClientWebSocketResponse) -> bytes:
    """The payload of the next sync update (or step 2) the server sends this client."""
    while True:
        msg = await ws.receive(timeout=WAIT_S)
        assert msg.type == aiohttp.WSMsgType.BINARY, msg
        data = bytes(msg.data)
        if data[0] == 0 and data[1] in (YSyncMessageType.SYNC_UPDATE, YSyncMessageType.SYNC_STEP2):
            return read_message(data[2:])


async def test_other_clients_get_an_update_before_its_commit_is_durable(
    served: tuple[Store, str],
) -> None:
    store, url = served
    committed: list[ChangeEvent] = []
    gate = threading.Event()
    held = threading.Event()

    def hold_the_writer(event: ChangeEvent) -> None:
        if event.doc == "d" and not held.is_set():
            held.set()
            gate.wait(WAIT_S)  # the writer thread, between accepting and committing

    # Registered after the endpoint's stream, so the endpoint hears first.
    unhold = store.subscribe(hold_the_writer, early=True)
    unlisten = store.subscribe(committed.append)
    try:
        async with aiohttp.ClientSession() as session:
            author = await session.ws_connect(url)
            reader = await session.ws_connect(url)
            for ws in (author, reader):  # each is registered once it got step 1
                msg = await ws.receive(timeout=WAIT_S)
                assert bytes(msg.data)[:2] == bytes([0, YSyncMessageType.SYNC_STEP1])
            await author.send_bytes(sync_message(YSyncMessageType.SYNC_UPDATE, _update("k", b"v")))
            seen: Doc = Doc()
            seen.apply_update(await _next_update(reader))
            # The reader holds it, and the writer has not committed: it is held before
            # txn.commit() (or, preempted right after the endpoint's listener, not yet
            # at the hold): either way no post-commit listener has heard it.
            assert committed == []
            await eventually(held.is_set)
            assert committed == [] and not gate.is_set()
            assert seen.get("root", type=Map).to_py() == {"k": b"v"}
            gate.set()
            # Then it is committed, and the reader is not sent it a second time:
            # the next update it gets is the author's next one.
            await author.send_bytes(sync_message(YSyncMessageType.SYNC_UPDATE, _update("k2", b"w")))
            seen.apply_update(await _next_update(reader))
            assert seen.get("root", type=Map).to_py() == {"k": b"v", "k2": b"w"}
            # The reader may again be ahead of the commit; listeners hear a commit
            # just after it lands (on the writer thread).
            await eventually(lambda: len(committed) >= 2)
            assert store.get("d", "k") == b"v" and store.get("d", "k2") == b"w"
            assert [e.keys for e in committed] == [frozenset({"k"}), frozenset({"k2"})]
            await author.close()
            await reader.close()
    finally:
        gate.set()
        unhold()
        unlisten()


async def test_an_update_the_writer_refuses_closes_its_client_only(
    served: tuple[Store, str],
) -> None:
    store, url = served
    async with aiohttp.ClientSession() as session:
        bad = await session.ws_connect(url)
        good = await session.ws_connect(url)
        for ws in (bad, good):
            await ws.receive(timeout=WAIT_S)
        # Well-framed, but not a Yjs v1 update: refused by the writer, after the
        # reader loop had already moved on (the update was queued, not awaited).
        await bad.send_bytes(sync_message(YSyncMessageType.SYNC_UPDATE, b"\x05\xff\xff\xff"))
        msg = await bad.receive(timeout=WAIT_S)
        while msg.type == aiohttp.WSMsgType.BINARY:
            msg = await bad.receive(timeout=WAIT_S)
        assert msg.type == aiohttp.WSMsgType.CLOSE
        assert msg.data == WSCloseCode.PROTOCOL_ERROR
        await good.send_bytes(sync_message(YSyncMessageType.SYNC_UPDATE, _update("ok", b"1")))
        await eventually(lambda: store.get("d", "ok") is not None)
        await good.close()


def test_local_writes_reach_early_listeners_only_once_committed() -> None:
    hub = ChangeHub()
    early: list[ChangeEvent] = []
    late: list[ChangeEvent] = []
    hub.subscribe(early.append, early=True)
    hub.subscribe(late.append)
    local = ChangeEvent("d", frozenset({"a"}), b"\x00\x00", None)
    remote = ChangeEvent("d", frozenset({"b"}), b"\x00\x00", "yjs:1")
    hub.publish_accepted([local, remote])
    assert early == [remote] and late == []
    hub.publish([local, remote])
    assert early == [remote, local] and late == [local, remote]


async def test_a_burst_reaches_readers_whole_and_never_returns_to_its_author(
    served: tuple[Store, str],
) -> None:
    _store, url = served
    async with aiohttp.ClientSession() as session:
        author = await session.ws_connect(url)
        reader = await session.ws_connect(url)
        for ws in (author, reader):
            await ws.receive(timeout=WAIT_S)
        burst = 300
        for i in range(burst):  # queued, not awaited: merged on the way out
            await author.send_bytes(
                sync_message(YSyncMessageType.SYNC_UPDATE, _update(f"b{i}", b"x"))
            )
        seen: Doc = Doc()
        root = seen.get("root", type=Map)
        messages = 0
        while len(root) < burst and messages < burst:
            seen.apply_update(await _next_update(reader))
            messages += 1
        assert sorted(root.keys()) == sorted(f"b{i}" for i in range(burst))
        # The reader's reply is the first update the author is sent: none of its own.
        await reader.send_bytes(sync_message(YSyncMessageType.SYNC_UPDATE, _update("r", b"y")))
        mine: Doc = Doc()
        mine.apply_update(await _next_update(author))
        assert mine.get("root", type=Map).to_py() == {"r": b"y"}
        await author.close()
        await reader.close()
