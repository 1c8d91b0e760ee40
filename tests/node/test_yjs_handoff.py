"""/yjs connections accepted by an invocation worker are served by the node itself.

A worker hands the client's socket to the node (edgestate/node/workers/handoff.py
and adopt.py) instead of relaying its messages: killing every worker -9 leaves
the connection up and syncing; a worker killed right after it sent the socket
still gets its client served; a refused handshake ends its connection.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import pytest
from pycrdt import YSyncMessageType

from edgestate.node.workers import Adopter
from edgestate.store import Store
from edgestate.sync.yjs import sync_message
from tests.node.conftest import NodeProcess, eventually, start_node
from tests.node.test_workers import all_workers_up, worker_pids
from tests.sync.conftest import FAST_STORE
from tests.sync.conftest import eventually as until
from tests.sync.yjs_app import one_key_update, until_key, yjs_app

# Bounds every wait on a socket: a test that hangs fails instead.
WAIT_S = 15
CHILD = Path(__file__).with_name("yjs_handoff_child.py")
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    n = start_node(tmp_path_factory.mktemp("handoff") / "data", "--no-mdns", "--workers", "2")
    try:
        yield n
    finally:
        n.stop()


def _ws_url(api: str, doc: str) -> str:
    return api.replace("http://", "ws://") + f"/yjs/{doc}"


@pytest.mark.timeout(90)
async def test_a_connection_through_a_worker_outlives_every_worker(node: NodeProcess) -> None:
    url = _ws_url(node.api, "handoff")
    async with aiohttp.ClientSession() as session:
        writer = await session.ws_connect(url, params={"token": node.token})
        reader = await session.ws_connect(url, params={"token": node.token})
        await writer.send_bytes(
            sync_message(YSyncMessageType.SYNC_UPDATE, one_key_update("a", b"1"))
        )
        await until_key(reader, "a", WAIT_S)
        before = worker_pids(node)
        assert before, "no worker to kill"
        for pid in before:
            os.kill(pid, signal.SIGKILL)
        await asyncio.to_thread(
            eventually,
            lambda: set(worker_pids(node)).isdisjoint(before) and all_workers_up(node),
            30,
            "every worker replaced",
        )
        # The same two connections, still served: the relay would have died with its worker.
        await writer.send_bytes(
            sync_message(YSyncMessageType.SYNC_UPDATE, one_key_update("b", b"2"))
        )
        await until_key(reader, "b", WAIT_S)
        assert not writer.closed and not reader.closed
        await writer.close()
        await reader.close()
    # Relayed before its fsync (docs/yjs.md): durable soon after.
    eventually(lambda: node.client.get("handoff", "b")["found"], WAIT_S, "b stored")


def test_a_refused_handshake_is_answered_by_the_node_and_ends_its_connection(
    node: NodeProcess,
) -> None:
    url = urlsplit(node.api)
    request = (
        "GET /yjs/handoff?token=not-a-token HTTP/1.1\r\n"
        f"Host: {url.netloc}\r\n"
        "Connection: Upgrade\r\nUpgrade: websocket\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    with socket.create_connection((url.hostname, url.port), timeout=WAIT_S) as conn:
        conn.sendall(request.encode())
        answer = b""
        # Read to the end: a connection kept open would time out here instead.
        while chunk := conn.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 401"), head
    assert b"connection: close" in head.lower()
    assert b'"code"' in body


@pytest.fixture
async def adopter(tmp_path: Path) -> AsyncIterator[tuple[Store, Adopter]]:
    """The node's side on its own: a store, its /yjs endpoint, and an Adopter."""
    store = Store.open(tmp_path / "data", FAST_STORE)
    try:
        async with yjs_app(store) as (endpoint, runner):
            taker = Adopter(runner, str(tmp_path / "handoff.sock"), 1.0)
            await taker.start()
            try:
                yield store, taker
            finally:
                await endpoint.close()  # its WebSockets end before the adopter's grace
                await taker.close()
    finally:
        store.close()


@pytest.mark.timeout(60)
async def test_a_worker_killed_after_it_sent_the_socket_loses_nothing(
    adopter: tuple[Store, Adopter],
) -> None:
    store, taker = adopter
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        str(CHILD),
        taker.path,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        assert child.stdout is not None
        async with asyncio.timeout(WAIT_S):
            port = int(await child.stdout.readline())
        async with aiohttp.ClientSession() as session:
            ws = await session.ws_connect(f"ws://127.0.0.1:{port}/yjs/midway")
            async with asyncio.timeout(WAIT_S):
                assert await child.wait() == -signal.SIGKILL
            update = one_key_update("kept", b"\x07")
            await ws.send_bytes(sync_message(YSyncMessageType.SYNC_UPDATE, update))
            await until(lambda: store.get("midway", "kept") == b"\x07")
            assert taker.adopted == 1
            await ws.close()
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
