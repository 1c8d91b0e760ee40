"""A relay that meets the node's accept queue full waits for room instead of
failing the request.

The exact interleaving behind a 503 ``node_link_lost`` "[Errno 107] Transport
endpoint is not connected" seen after storms of clients that reset their
connections (tests/node/test_relay_client_gone.py): the node's unix listener
has its backlog full, so the relay's non-blocking ``connect()`` fails with
``EAGAIN``; asyncio took that socket for connected and aiohttp's first write on
it failed with ``ENOTCONN`` (its one retry of an idempotent request, made at
once, met the same full queue). Here the queue is filled for real (a listener
nobody accepts on yet) and the server starts accepting only after the old
connect path had failed: no timing involved.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from edgestate.node.workers import handoff
from edgestate.node.workers.proxy import NodeProxy, connect_unix

pytestmark = pytest.mark.timeout(60)

# Loop turns the old connect path needs to fail both attempts (connect, writable,
# transport, write, ENOTCONN, lost; twice) are about twenty; after this many the
# request has failed there or is waiting for room.
_TURNS = 500


@pytest.fixture
def full_listener(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    """A listening unix socket whose accept queue is full (no one accepts yet)."""
    path = str(tmp_path / "node.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    fillers: list[socket.socket] = []
    try:
        listener.bind(path)
        listener.listen(1)
        while True:
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            probe.setblocking(False)
            try:
                probe.connect(path)
            except BlockingIOError:
                probe.close()  # EAGAIN: the queue is full
                break
            fillers.append(probe)
        yield path, listener
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


async def _status(_: web.Request) -> web.Response:
    return web.json_response({"ok": True})


async def _serve_when(listener: socket.socket, task: asyncio.Task[int]) -> web.AppRunner:
    """Let ``task`` run while nobody accepts, then answer on ``listener``."""
    for _ in range(_TURNS):
        if task.done():
            break
        await asyncio.sleep(0)
    app = web.Application()
    app.router.add_route("*", "/v1/admin/status", _status)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.SockSite(runner, listener).start()
    return runner


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_a_relay_waits_for_room_in_the_nodes_accept_queue(
    full_listener: tuple[str, socket.socket], method: str
) -> None:
    path, listener = full_listener
    proxy = NodeProxy(path)

    async def ask() -> int:
        async with proxy.session().request(method, "http://node/v1/admin/status") as reply:
            await reply.read()
            return reply.status

    task = asyncio.create_task(ask())
    runner = await _serve_when(listener, task)
    try:
        # Before the fix: ClientOSError 107 (the worker answered 503 node_link_lost).
        assert await task == 200
    finally:
        await proxy.close()
        await runner.cleanup()


async def test_connect_unix_gives_up_with_its_callers_timeout(
    full_listener: tuple[str, socket.socket],
) -> None:
    # A node that never accepts: the wait is bounded by the caller, and the
    # socket it was making is closed (no ResourceWarning).
    path, _ = full_listener
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            await connect_unix(path)


async def test_a_node_socket_that_is_gone_is_a_connector_error(tmp_path: Path) -> None:
    # What the relay answers 503 node_link_lost for: aiohttp's own error type,
    # as with its stock unix connector.
    proxy = NodeProxy(str(tmp_path / "no-node.sock"))
    try:
        with pytest.raises(aiohttp.ClientConnectorError, match=r"no-node\.sock"):
            await proxy.session().get("http://node/v1/admin/status")
    finally:
        await proxy.close()


async def test_a_handoff_waits_for_room_and_hands_the_connection_over(
    full_listener: tuple[str, socket.socket],
) -> None:
    # The same queue on the handoff socket: before, the connection was "made"
    # unconnected, send_fds failed with ENOTCONN and the worker fell back to
    # relaying the WebSocket (the shortcut lost). Now it waits, and the node side
    # receives the descriptor and the request bytes.
    path, listener = full_listener
    client, kept = socket.socketpair()
    try:
        task = asyncio.create_task(handoff.offer(path, client.fileno(), b"GET /yjs/d"))
        for _ in range(_TURNS):
            if task.done():
                break
            await asyncio.sleep(0)
        assert not task.done()  # waiting for room, not failed
        listener.setblocking(False)
        loop = asyncio.get_running_loop()
        received: list[bytes] = []
        # The fillers came first: drain the queue until the offer's connection.
        while not received:
            conn, _ = await loop.sock_accept(listener)
            with conn:
                conn.setblocking(True)
                conn.settimeout(0.2)
                try:
                    msg, fds, _flags, _addr = socket.recv_fds(conn, 1 << 16, 1)
                except TimeoutError:
                    continue  # a filler: it sends nothing
                for fd in fds:
                    os.close(fd)
                received.append(msg)
                conn.sendall(handoff.TAKEN)
        assert await asyncio.wait_for(task, 10) is True
        assert received[0].endswith(b"GET /yjs/d")
    finally:
        client.close()
        kept.close()
