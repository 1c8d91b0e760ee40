"""The node's side of a ``/yjs`` handoff: adopt client connections the workers accepted.

A worker that accepts a ``/yjs`` WebSocket upgrade sends the client's socket and
the bytes it read to the node's handoff socket (:mod:`.handoff`). The node makes
it a connection of its own HTTP server, as if it had accepted it: the request
bytes are fed to a fresh aiohttp ``RequestHandler`` before the socket is read,
so the node parses the head, checks the token and answers the handshake in its
own words (a refusal included), then serves every message without a relay.

An adopted connection carries that one request: a refused handshake is
answered with ``Connection: close`` (anything else the client sends there goes
to a new connection, through a worker again), and only ``/yjs/...`` is served
on it.

Ownership: the node starts the :class:`Adopter` before its workers and closes
it after them (``close`` stops listening, ends handoffs under way, then shuts
down the adopted connections within the grace; the y-websocket endpoint has
closed their WebSockets already).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Awaitable, Callable

from aiohttp import web

from edgestate.node.workers.handoff import (
    HANDOFF_TIMEOUT_S,
    MAX_HANDOFF_BYTES,
    NOT_TAKEN,
    TAKEN,
    YJS_PREFIX,
)

log = logging.getLogger(__name__)

_HEADER = 4
# Handoffs a worker may have in progress at once (the listen backlog).
_BACKLOG = 128

Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]


class Adopter:
    """Listens on ``path`` for handoffs and serves each adopted connection with
    the handlers of ``runner`` (the node's API application)."""

    def __init__(self, runner: web.AppRunner, path: str, shutdown_grace_s: float) -> None:
        self._runner = runner
        self.path = path
        self._grace = shutdown_grace_s
        self._listen: socket.socket | None = None
        self._server: web.Server | None = None
        self._accepting: asyncio.Task[None] | None = None
        self._handoffs: set[asyncio.Task[None]] = set()
        self.adopted = 0

    async def start(self) -> None:
        """Bind the handoff socket and take handoffs."""
        api = self._runner.server
        assert api is not None, "the runner is set up first"
        self._server = web.Server(
            _one_yjs_request(api.request_handler),
            request_factory=api.request_factory,
            access_log=None,  # the node's middleware logs each request
        )
        listen = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listen.bind(self.path)
            listen.listen(_BACKLOG)
        except OSError:
            listen.close()
            raise
        listen.setblocking(False)
        self._listen = listen
        self._accepting = asyncio.create_task(self._accept(listen), name="edgestate-yjs-handoff")

    async def close(self) -> None:
        """Stop taking handoffs; shut down the adopted connections."""
        if self._accepting is not None:
            self._accepting.cancel()
            await asyncio.wait([self._accepting])
        for task in self._handoffs:
            task.cancel()
        if self._handoffs:
            await asyncio.wait(self._handoffs)
        if self._listen is not None:
            self._listen.close()
            with contextlib.suppress(OSError):
                os.unlink(self.path)
        if self._server is not None:
            self._server.pre_shutdown()
            await self._server.shutdown(self._grace)

    async def _accept(self, listen: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                link, _ = await loop.sock_accept(listen)
            except OSError as exc:
                log.error("the /yjs handoff socket failed: %s", exc)
                await asyncio.sleep(0.1)
                continue
            task = asyncio.create_task(self._take(link))
            self._handoffs.add(task)
            task.add_done_callback(self._handoffs.discard)

    async def _take(self, link: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        client: socket.socket | None = None
        try:
            async with asyncio.timeout(HANDOFF_TIMEOUT_S):
                client, data = await _receive(loop, link)
            answer = TAKEN if await self._adopt(client, data) else NOT_TAKEN
            client = None  # the transport's now, or closed
        except (OSError, TimeoutError, ValueError) as exc:
            # A worker that died part way, or sent what no worker sends: the
            # client (if it came) sees its connection close and reconnects.
            log.warning("a /yjs connection handoff failed: %s", exc)
            answer = NOT_TAKEN
        except Exception:
            # Not the worker's doing: say so, and keep taking handoffs.
            log.exception("a /yjs connection handoff failed")
            answer = NOT_TAKEN
        finally:
            if client is not None:
                client.close()
        # The worker may be gone (killed after sending): the connection is served anyway.
        with contextlib.suppress(OSError):
            await loop.sock_sendall(link, answer)
        link.close()

    async def _adopt(self, client: socket.socket, data: bytes) -> bool:
        if client.family not in (socket.AF_INET, socket.AF_INET6) or (
            client.type != socket.SOCK_STREAM
        ):
            client.close()
            raise ValueError(f"a handed-off socket that is not TCP ({client.family!r})")
        server = self._server
        if server is None:
            client.close()
            return False
        client.setblocking(False)
        loop = asyncio.get_running_loop()
        await loop.connect_accepted_socket(lambda: _Seeded(server(), data), client)
        self.adopted += 1
        return True


async def _receive(
    loop: asyncio.AbstractEventLoop, link: socket.socket
) -> tuple[socket.socket, bytes]:
    """One handoff message: the client's socket and its request bytes."""
    while True:
        try:
            chunk, fds, _flags, _addr = socket.recv_fds(link, 1 << 16, 1)
            break
        except BlockingIOError:
            await _readable(loop, link)
    if not fds:
        raise ValueError("a handoff without a connection")
    try:
        client = socket.socket(fileno=fds[0])
    except OSError:
        os.close(fds[0])  # not a socket at all
        raise
    try:
        while len(chunk) < _HEADER:
            chunk += await _more(loop, link)
        size = int.from_bytes(chunk[:_HEADER], "big")
        if size > MAX_HANDOFF_BYTES:
            raise ValueError(f"a handoff of {size} bytes, over {MAX_HANDOFF_BYTES}")
        while len(chunk) < _HEADER + size:
            chunk += await _more(loop, link)
    except BaseException:
        client.close()
        raise
    return client, chunk[_HEADER : _HEADER + size]


async def _more(loop: asyncio.AbstractEventLoop, link: socket.socket) -> bytes:
    data = await loop.sock_recv(link, 1 << 16)
    if not data:
        raise ConnectionResetError("the worker closed the handoff part way")
    return data


async def _readable(loop: asyncio.AbstractEventLoop, link: socket.socket) -> None:
    ready: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(link.fileno(), wake)
    try:
        await ready
    finally:
        loop.remove_reader(link.fileno())


class _Seeded(asyncio.Protocol):
    """Hands the transport to ``handler`` with the bytes the worker already read,
    before anything new is read from the socket (the reader is added after
    ``connection_made``, in the same turn of the loop)."""

    def __init__(self, handler: asyncio.Protocol, data: bytes) -> None:
        self._handler = handler
        self._data = data

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.set_protocol(self._handler)
        self._handler.connection_made(transport)
        if self._data:
            self._handler.data_received(self._data)

    def connection_lost(self, exc: Exception | None) -> None:
        self._handler.connection_lost(exc)  # only if lost before it was made: never


def _one_yjs_request(handler: Handler) -> Handler:
    """``handler`` for the one request an adopted connection carries."""

    async def handle(request: web.BaseRequest) -> web.StreamResponse:
        if not request.path.startswith(YJS_PREFIX):
            # Workers hand over /yjs only: anything else is not served here.
            response: web.StreamResponse = web.Response(status=404, text="not found")
        else:
            try:
                response = await handler(request)
            except web.HTTPException as exc:
                exc.force_close()
                raise
        if not response.prepared:
            # A refused handshake: its answer ends the connection.
            response.force_close()
        return response

    return handle
