"""A worker's side of a ``/yjs`` connection: give the client's socket to the node.

Relaying a y-websocket connection message by message costs every update a
second process hop in and out (~0.3-0.4 ms of its latency, docs/yjs.md), for
a connection the worker has no part in. So on a ``GET /yjs/...`` WebSocket
upgrade the worker stops reading the client's socket, sends its descriptor
(``SCM_RIGHTS``) with the bytes it already read (the request head, rebuilt from
what it parsed, and anything the client sent behind it) to the node's handoff
socket (:mod:`.adopt`), and forgets the connection once the node says it took
it. The node parses the request itself, checks the token, answers the
handshake and serves the connection from then on; the client keeps one address
and never sees the hop, and the worker may exit or be killed without cutting it.

If the node cannot be asked (its handoff socket refuses, it answers "not
taken"), nothing was handed over and the worker relays the connection as it
does every other route (:mod:`.proxy`). Once the descriptor is sent, a lost
answer means the node may hold it: the worker lets go either way, and a client
the node did not take sees its connection close and reconnects (y-websocket
does by itself, and resends what the node lacks with sync step 1 / 2).

Wire (``schemas/worker-protocol.md``, "/yjs handoff"): one unix connection per
handoff; the worker sends a 4-byte big-endian length and that many request
bytes, the client's descriptor riding on the first chunk; the node answers one
byte, :data:`TAKEN` or :data:`NOT_TAKEN`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import struct

from aiohttp import web

from edgestate.errors import HandoffError
from edgestate.node.workers.proxy import NodeProxy, connect_unix

log = logging.getLogger(__name__)

TAKEN = b"\x01"
NOT_TAKEN = b"\x00"
# The request bytes of one handoff: aiohttp's own limits keep a head under
# ~40 KiB and its tail under one read buffer (64 KiB); past this the message
# is not one a worker sent.
MAX_HANDOFF_BYTES = 1 << 20
# A node that neither takes nor refuses a connection in this long is stuck: the
# worker lets go of the client (which reconnects) rather than hold it forever.
HANDOFF_TIMEOUT_S = 10.0
_LENGTH = struct.Struct(">I")
YJS_PREFIX = "/yjs/"


def handoff_path(node_socket: str) -> str:
    """The node's handoff socket, beside its private API socket (same 0700 directory)."""
    return os.path.join(os.path.dirname(node_socket), "handoff.sock")


def handoff_message(data: bytes) -> bytes:
    """One handoff's bytes on the wire: a 4-byte big-endian length, then ``data``."""
    return _LENGTH.pack(len(data)) + data


async def offer(path: str, fd: int, data: bytes) -> bool:
    """Send the client socket ``fd`` and its request bytes ``data`` to the node at
    ``path``; True once the node took it, False if it said it did not.

    Raises :class:`HandoffError` if the descriptor never left this process,
    ``OSError`` or ``TimeoutError`` if it left and no answer came.
    """
    if len(data) > MAX_HANDOFF_BYTES:
        raise HandoffError(f"request of {len(data)} bytes, over {MAX_HANDOFF_BYTES}")
    loop = asyncio.get_running_loop()
    try:
        # Not loop.sock_connect: to a full accept queue it reports an unconnected
        # socket as connected (see proxy.connect_unix). Until connected, the
        # descriptor has not left: the caller can still relay the request.
        async with asyncio.timeout(HANDOFF_TIMEOUT_S):
            link = await connect_unix(path)
    except (OSError, TimeoutError) as exc:
        raise HandoffError(f"the node's handoff socket: {exc!r}") from exc
    try:
        async with asyncio.timeout(HANDOFF_TIMEOUT_S):
            message = handoff_message(data)
            try:
                # A fresh connection's send buffer is empty: the descriptor
                # leaves with at least the first chunk, or not at all.
                sent = socket.send_fds(link, [message], [fd])
            except OSError as exc:
                raise HandoffError(f"sending the connection: {exc}") from exc
            if sent < len(message):
                await loop.sock_sendall(link, message[sent:])
            answer = await loop.sock_recv(link, 1)
    finally:
        link.close()
    if answer not in (TAKEN, NOT_TAKEN):
        raise ConnectionResetError("the node closed the handoff without an answer")
    return answer == TAKEN


def request_bytes(request: web.Request) -> bytes:
    """The request head as the client sent it (re-serialized from what aiohttp
    parsed: method, raw path, version, raw headers in order) and what it read
    behind it."""
    version = request.version
    lines = [f"{request.method} {request.raw_path} HTTP/{version.major}.{version.minor}".encode()]
    lines.extend(name + b": " + value for name, value in request.raw_headers)
    head = b"\r\n".join(lines) + b"\r\n\r\n"
    # Bytes the client sent after the head (a client that did not wait for the
    # 101): aiohttp keeps them on the protocol until a WebSocket reader takes them.
    tail = getattr(request.protocol, "_message_tail", b"")
    return head + bytes(tail)


def can_hand_off(request: web.Request) -> bool:
    """A plain WebSocket upgrade to ``/yjs/...`` with no body, not over TLS: the only
    kind handed over."""
    return (
        request.method == "GET"
        and request.path.startswith(YJS_PREFIX)
        and request.headers.get("Upgrade", "").lower() == "websocket"
        and not request.body_exists
        and request.transport is not None
        and request.transport.get_extra_info("socket") is not None
        # Under api.tls this worker holds the TLS session: the bare socket would
        # give the node a stream it cannot decrypt, so such a connection is relayed.
        and request.transport.get_extra_info("sslcontext") is None
    )


class YjsHandoff:
    """The worker's ``/yjs`` route: hand the connection over, or relay it."""

    def __init__(self, node_socket: str, proxy: NodeProxy) -> None:
        self._path = handoff_path(node_socket)
        self._proxy = proxy
        self.handed_off = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Give the connection to the node; relay it if the node cannot take it."""
        if not can_hand_off(request):
            return await self._proxy.handle(request)
        transport = request.transport
        assert transport is not None
        # First: whatever the client sends from here on is the node's to read.
        transport.pause_reading()
        sock = transport.get_extra_info("socket")
        try:
            taken = await offer(self._path, sock.fileno(), request_bytes(request))
        except HandoffError as exc:
            log.warning("relaying a /yjs connection: %s", exc)
            transport.resume_reading()
            return await self._proxy.handle(request)
        except (OSError, TimeoutError) as exc:
            # It may be the node's now: never answer on it as well.
            log.warning("a /yjs connection's handoff got no answer (%s): letting go", exc)
            taken = True
        if not taken:
            transport.resume_reading()
            return await self._proxy.handle(request)
        self.handed_off += 1
        # Closes this process's descriptor only: the node holds the connection
        # through its own, so no FIN or RST reaches the client.
        transport.abort()
        return _Gone()


class _Gone(web.StreamResponse):
    """What the route returns for a connection handed to the node: nothing to
    write. aiohttp takes the error as a client that left, and forgets it."""

    async def prepare(self, request: web.BaseRequest) -> None:
        raise ConnectionResetError("the connection was handed to the node")
