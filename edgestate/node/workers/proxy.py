"""A worker's handler for every route but invocations: pass it to the node.

The node answers admin, ``/metrics``, health and ``/yjs`` on a private unix
socket; a worker relays each such request (streamed both ways, so watch streams
and large bundles pass). A ``/yjs`` WebSocket is handed to the node whole
(:mod:`.handoff`) and relayed here message by message only if the node cannot
take it. The client keeps one address and never sees the hop.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
from typing import TYPE_CHECKING

import aiohttp
from aiohttp import web
from aiohttp.client_exceptions import UnixClientConnectorError
from aiohttp.client_proto import ResponseHandler
from yarl import URL

from edgestate.node.api.certified import CERT_HEADER, VERIFIED, has_peer_certificate
from edgestate.node.api.observe import CLIENT_HEADER
from edgestate.node.api.responses import error_response

if TYPE_CHECKING:
    from aiohttp.tracing import Trace

# Per connection, never forwarded (RFC 9110 7.6.1); lengths are recomputed.
_HOP = frozenset(
    h.lower()
    for h in (
        "Connection",
        "Keep-Alive",
        "Proxy-Connection",
        "TE",
        "Trailer",
        "Transfer-Encoding",
        "Upgrade",
        "Host",
        "Content-Length",
        # Ours to set (the client's address, for the node's access log; whether
        # its TLS certificate was verified): a client must not claim either.
        CLIENT_HEADER,
        CERT_HEADER,
    )
)
_WS_HANDSHAKE = frozenset(
    h.lower() for h in ("Sec-WebSocket-Key", "Sec-WebSocket-Version", "Sec-WebSocket-Extensions")
)
# Waits between connect attempts while the node's accept queue is full: the
# first short (the node's loop usually drains its queue within a turn), doubling
# to a cap that keeps hundreds of waiting relays from spinning.
_CONNECT_RETRY_FIRST_S = 0.001
_CONNECT_RETRY_MAX_S = 0.025


async def connect_unix(path: str) -> socket.socket:
    """A non-blocking unix stream socket connected to ``path``, waiting while
    the listener's accept queue is full.

    On Linux a non-blocking ``connect()`` to a unix socket whose listen backlog
    is full fails with ``EAGAIN`` and leaves the socket unconnected: there is no
    connection in progress to wait for, the caller must connect again.
    asyncio's ``sock_connect`` (and so ``create_unix_connection`` and aiohttp's
    ``UnixConnector``) takes ``EAGAIN`` for ``EINPROGRESS``, waits for the
    socket to be writable (an unconnected one is at once), sees no ``SO_ERROR``
    and reports it connected; the first write then fails with ``ENOTCONN``
    (uvloop, ``api.event_loop``, fails the connect with ``EAGAIN`` instead).
    Nothing signals room in the queue, so this tries again after a short wait.
    Bound it with a timeout (the caller's): a node that never accepts keeps it
    waiting.
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.setblocking(False)
    wait = _CONNECT_RETRY_FIRST_S
    try:
        while True:
            try:
                sock.connect(path)
                return sock
            except BlockingIOError as exc:
                if exc.errno != errno.EAGAIN:
                    raise
            await asyncio.sleep(wait)
            wait = min(wait * 2, _CONNECT_RETRY_MAX_S)
    except BaseException:
        sock.close()
        raise


class _NodeConnector(aiohttp.UnixConnector):
    """aiohttp's unix connector, connecting with :func:`connect_unix`.

    Seen after a storm of clients that reset their connections: every relay
    opens a node connection at once, the node's accept queue (128) overflows,
    and with aiohttp's own connect the request behind it got 503
    ``node_link_lost`` "[Errno 107] Transport endpoint is not connected". The
    override is of aiohttp's private ``_create_connection`` (same signature
    since 3.9): aiohttp has no public hook for a unix socket's connect.
    """

    async def _create_connection(
        self,
        req: aiohttp.ClientRequest,
        traces: list[Trace],
        timeout: aiohttp.ClientTimeout,  # noqa: ASYNC109 (aiohttp's signature)
    ) -> ResponseHandler:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout.sock_connect):
                sock = await connect_unix(self.path)
                try:
                    _, proto = await loop.create_unix_connection(
                        lambda: ResponseHandler(loop), sock=sock
                    )
                except BaseException:
                    sock.close()
                    raise
        except OSError as exc:
            if exc.errno is None and isinstance(exc, TimeoutError):
                raise  # the timeout's own: aiohttp makes it a ConnectionTimeoutError
            raise UnixClientConnectorError(self.path, req.connection_key, exc) from exc
        return proto


class NodeProxy:
    """Relays requests to the node's private listener at ``socket_path``."""

    def __init__(self, socket_path: str) -> None:
        self._path = socket_path
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=_NodeConnector(path=self._path, limit=0),
                auto_decompress=False,
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Relay ``request`` to the node and its answer back."""
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await self._websocket(request)
        return await self.handle_plain(request)

    async def handle_plain(
        self, request: web.Request, *, upgrade: bool = False
    ) -> web.StreamResponse:
        """Relay one HTTP request; ``upgrade``: with its upgrade headers, for the
        node to refuse a WebSocket handshake in its own words."""
        keep = {"connection", "upgrade"} if upgrade else set()
        headers = {
            k: v for k, v in request.headers.items() if k.lower() not in _HOP or k.lower() in keep
        }
        headers[CLIENT_HEADER] = request.remote or ""
        if has_peer_certificate(request):
            headers[CERT_HEADER] = VERIFIED  # api.tls: admin without a token
        body = request.content if request.body_exists else None
        try:
            upstream = await self.session().request(
                request.method,
                _upstream(request),
                headers=headers,
                data=body,
                allow_redirects=False,
            )
        except aiohttp.ClientError as exc:
            return error_response(503, "node_link_lost", f"the node did not answer: {exc}")
        async with upstream:
            response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            for key, value in upstream.headers.items():
                if key.lower() not in _HOP or key.lower() == "content-length":
                    response.headers.add(key, value)
            try:
                await response.prepare(request)
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
                await response.write_eof()
            except (aiohttp.ClientError, ConnectionError):
                # The client may have gone meanwhile (a reset, a timeout): its answer
                # has nowhere to go, which is not an error of ours. The node's
                # connection goes with it, never back to the pool half-read.
                upstream.close()
        return response

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        if not {"sec-websocket-key", "sec-websocket-version"} <= {
            k.lower() for k in request.headers
        }:
            return await self.handle_plain(request, upgrade=True)  # a broken handshake
        # The node first: if it refuses (a bad token), the client gets its status,
        # not an accepted socket closed at once.
        headers = {
            k: v
            for k, v in request.headers.items()
            if k.lower() not in _HOP and k.lower() not in _WS_HANDSHAKE
        }
        headers[CLIENT_HEADER] = request.remote or ""
        if has_peer_certificate(request):
            headers[CERT_HEADER] = VERIFIED  # api.tls: a cluster certificate needs no token
        protocols = [
            p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",")
        ]
        headers.pop("Sec-WebSocket-Protocol", None)
        try:
            upstream = await self.session().ws_connect(
                _upstream(request),
                headers=headers,
                protocols=[p for p in protocols if p],
                autoping=True,
                max_msg_size=0,
                # A local unix socket: deflating each message twice more (here
                # and in the node) only costs CPU; the client's own link keeps
                # whatever it negotiated.
                compress=0,
            )
        except aiohttp.WSServerHandshakeError:
            # Refused (a bad or expired token): ask again as a plain request to relay
            # the node's own answer, its error code included.
            return await self.handle_plain(request, upgrade=True)
        except aiohttp.ClientError as exc:
            return error_response(503, "node_link_lost", f"the node did not answer: {exc}")
        client = web.WebSocketResponse(
            protocols=[upstream.protocol] if upstream.protocol else (), max_msg_size=0
        )
        await client.prepare(request)

        async def pump(
            source: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
            sink: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
        ) -> None:
            # Either side may go at any moment: its end is the relay's end.
            with contextlib.suppress(ConnectionError, aiohttp.ClientError, RuntimeError):
                async for message in source:
                    if message.type == aiohttp.WSMsgType.BINARY:
                        await sink.send_bytes(message.data)
                    elif message.type == aiohttp.WSMsgType.TEXT:
                        await sink.send_str(message.data)
                await sink.close(code=source.close_code or 1000)

        tasks = [
            asyncio.create_task(pump(client, upstream)),
            asyncio.create_task(pump(upstream, client)),
        ]
        try:
            _, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
            await asyncio.wait(tasks)
        finally:
            await upstream.close()
            await client.close()
        return client


def _upstream(request: web.Request) -> URL:
    # The path as the client sent it, still encoded: normalizing it here (%2E%2E
    # to ..) would answer for a route the client never asked for.
    return URL(f"http://node{request.raw_path}", encoded=True)
