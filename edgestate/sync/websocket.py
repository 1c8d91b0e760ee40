"""The WebSocket transport (aiohttp): its ``Channel``, the server and the dialer.

The server accepts ``/sync`` upgrades (after the mutual-TLS check) and the
dialer keeps one redial loop per discovered address; both hand each WebSocket,
wrapped as a ``WebSocketChannel``, to the daemon's connection logic, which
knows nothing of aiohttp. The dialer owns its dial tasks and HTTP session:
``stop()`` ends them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

import aiohttp
from aiohttp import WSCloseCode, WSMsgType, web

from edgestate.errors import (
    ConnectionDeclinedError,
    ListenError,
    MalformedFrameError,
    OversizedFrameError,
    PeerGoneError,
    SyncError,
    UnexpectedFrameError,
)
from edgestate.sync.channel import MAX_REASON, Channel
from edgestate.sync.config import Limits, SyncConfig
from edgestate.sync.connection import PeerConnection
from edgestate.sync.discovery import Found
from edgestate.sync.peers import Backoff, PeerRecord, PeerState, PeerTable
from edgestate.sync.stats import SyncStats
from edgestate.sync.tasks import cancel_and_wait

log = logging.getLogger(__name__)

SYNC_PATH = "/sync"
# A peer that stays unreachable is retried every few seconds (backoff_max_s): its
# first failure is a warning, then one reminder this often, so the log says the
# peer is still down without one line per retry.
DIAL_WARNING_INTERVAL_S = 300.0


class RunChannel(Protocol):
    """Runs one connection over a channel to its end; True if the hello succeeded."""

    def __call__(
        self,
        channel: Channel,
        dialed_by_us: bool,
        record: PeerRecord | None,
        cert: bytes | None,
        *,
        source: str | None,
    ) -> Awaitable[bool]:
        """(channel, dialed_by_us, record of the dialed address, peer certificate;
        ``source`` the peer's network address, for per-source limits)."""
        ...


class DialGate(Protocol):
    """Which known addresses to dial now (the bounded mesh, ``edgestate.sync.mesh``)."""

    def wanted(self, record: PeerRecord) -> bool:
        """Whether to dial ``record``'s address now."""
        ...

    def wait_changed(self) -> Awaitable[None]:
        """Return when the answer of ``wanted`` may have changed."""
        ...

    def dial_ended(self, record: PeerRecord, close_code: int | None) -> None:
        """A dial of ours ended with this close code (the peer's, if it closed)."""
        ...


WebSocket = web.WebSocketResponse | aiohttp.ClientWebSocketResponse


class WebSocketChannel:
    """A ``Channel`` over an aiohttp WebSocket (either end of it)."""

    def __init__(self, ws: WebSocket) -> None:
        self.ws = ws
        self._reason: str | None = None

    @property
    def closed(self) -> bool:
        return self.ws.closed

    @property
    def close_code(self) -> int | None:
        return self.ws.close_code

    @property
    def close_reason(self) -> str | None:
        return self._reason

    async def send(self, data: bytes) -> None:
        try:
            await self.ws.send_bytes(data)
        except aiohttp.ClientError as exc:
            raise ConnectionError(str(exc)) from exc

    async def receive(self) -> bytes:
        try:
            msg = await self.ws.receive()
        except aiohttp.ClientError as exc:
            raise ConnectionError(str(exc)) from exc
        if msg.type == WSMsgType.BINARY:
            data: bytes = msg.data
            return data
        if msg.type == WSMsgType.ERROR:
            error = self.ws.exception()
            if (
                isinstance(error, aiohttp.WebSocketError)
                and error.code == WSCloseCode.MESSAGE_TOO_BIG
            ):
                raise OversizedFrameError(str(error))
            raise MalformedFrameError(f"websocket error: {error}")
        if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
            if msg.type == WSMsgType.CLOSE and isinstance(msg.extra, str):
                self._reason = msg.extra
            raise PeerGoneError
        raise UnexpectedFrameError(f"{msg.type.name.lower()} frame; the protocol is binary")

    async def close(self, code: int, reason: str) -> None:
        await self.ws.close(code=code, message=reason.encode()[:MAX_REASON])


def transport_limit(limits: Limits) -> int:
    """aiohttp's message limit for our frame limits."""
    # aiohttp buffers a whole message before we see it, so this bounds what one
    # peer can make us hold; since protocol version 4 no frame needs more than
    # max_frame_bytes (big diffs come in parts). Over this limit aiohttp closes
    # with 1009 but no reason; the slack lets a frame a little over our limit be
    # read and refused with one saying why.
    return limits.max_frame_bytes + max(TRANSPORT_SLACK_BYTES, limits.max_frame_bytes // 8)


# See transport_limit: at least this much slack over max_frame_bytes.
TRANSPORT_SLACK_BYTES = 64 << 10


def _peer_cert(ws: aiohttp.ClientWebSocketResponse) -> bytes | None:
    ssl_obj = ws.get_extra_info("ssl_object")
    if ssl_obj is None:
        return None
    cert: bytes | None = ssl_obj.getpeercert(binary_form=True)
    return cert


class Server:
    """Accepts inbound sync connections on ``SYNC_PATH``."""

    def __init__(
        self,
        run: RunChannel,
        config: SyncConfig,
        *,
        ssl_context: ssl.SSLContext | None,
        stats: SyncStats,
        closing: Callable[[], bool],
    ) -> None:
        self._run = run
        self._config = config
        self._ssl = ssl_context
        self._stats = stats
        self._closing = closing
        self._runner: web.AppRunner | None = None

    def routes(self) -> list[web.RouteDef]:
        """Routes to mount into a host application."""
        return [web.get(SYNC_PATH, self._handle_inbound)]

    def app(self) -> web.Application:
        """A sub-application serving the sync endpoint."""
        application = web.Application()
        application.add_routes(self.routes())
        return application

    async def start(self) -> int:
        """Serve on the configured host and port; returns the bound port."""
        self._runner = web.AppRunner(self.app(), access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(
            self._runner, self._config.host, self._config.port, ssl_context=self._ssl
        )
        try:
            await site.start()
        except OSError as exc:
            raise ListenError.from_os_error(
                "sync", self._config.host, self._config.port, exc
            ) from exc
        return int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        """Stop serving (if ``start`` ran)."""
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle_inbound(self, request: web.Request) -> web.StreamResponse:
        limits = self._config.limits
        ws = web.WebSocketResponse(
            max_msg_size=transport_limit(limits), heartbeat=self._config.heartbeat_s
        )
        if self._closing():
            raise web.HTTPServiceUnavailable(reason="node shutting down")
        cert = None
        if self._ssl is not None:
            ssl_obj = request.transport.get_extra_info("ssl_object") if request.transport else None
            cert = ssl_obj.getpeercert(binary_form=True) if ssl_obj is not None else None
            if cert is None:
                self._stats.refusal(request.remote, "no client certificate")
                raise web.HTTPForbidden(reason="client certificate required")
        await ws.prepare(request)
        with contextlib.suppress(ConnectionDeclinedError):
            await self._run(WebSocketChannel(ws), False, None, cert, source=request.remote)
        return ws


class FailureLog:
    """The log level of each failed dial of one address: a warning for the first
    failure of a streak (and every ``interval_s`` while it lasts), debug otherwise."""

    def __init__(self, interval_s: float = DIAL_WARNING_INTERVAL_S) -> None:
        self.interval_s = interval_s
        self.streak = 0  # failed attempts since the last established connection
        self._warned_at: float | None = None

    def failed(self) -> int:
        """Count one failure; the level to log it at."""
        self.streak += 1
        now = time.monotonic()
        if self._warned_at is None or now - self._warned_at >= self.interval_s:
            self._warned_at = now
            return logging.WARNING
        return logging.DEBUG

    def succeeded(self) -> None:
        """A connection was established: the next failure starts a new streak."""
        self.streak, self._warned_at = 0, None


class Dialer:
    """One redial loop per discovered address, with backoff; owns those tasks."""

    def __init__(
        self,
        run: RunChannel,
        config: SyncConfig,
        *,
        table: PeerTable[PeerConnection],
        ssl_context: ssl.SSLContext | None,
        stats: SyncStats,
        closing: Callable[[], bool],
    ) -> None:
        self._run = run
        self._config = config
        self._table = table
        self._ssl = ssl_context
        self._stats = stats
        self._dialers: dict[str, asyncio.Task[None]] = {}
        self._closing = closing
        self._session: aiohttp.ClientSession | None = None
        # None: dial every known address (a full mesh).
        self.gate: DialGate | None = None

    async def start(self) -> None:
        """Open the HTTP session the dial loops use."""
        self._session = aiohttp.ClientSession()

    def found(self, found: Found) -> None:
        """A discovery result: dial that address from now on."""
        if self._closing():
            return
        record = self._table.found(found)
        address = record.address
        assert address is not None
        if address not in self._dialers:
            task = asyncio.get_running_loop().create_task(self._dial_loop(record))
            self._dialers[address] = task
            task.add_done_callback(functools.partial(self._dialer_done, address))

    def lost(self, found: Found) -> None:
        """A discovery source lost an address."""
        # The dialer forgets the peer once it stays unreachable past forget_after_s.
        log.info("discovery: %s:%s went away", found.host, found.port)

    def _dialer_done(self, address: str, task: asyncio.Task[None]) -> None:
        if self._dialers.get(address) is task:
            del self._dialers[address]

    async def stop(self, wait_s: float) -> None:
        """Cancel every dial loop (their connections end with them) and wait."""
        await cancel_and_wait(list(self._dialers.values()), wait_s)

    async def close_session(self) -> None:
        """Close the HTTP session (after ``stop``)."""
        if self._session is not None:
            await self._session.close()

    async def _dial_loop(self, record: PeerRecord) -> None:
        assert record.address is not None and self._session is not None
        config = self._config
        backoff = Backoff(config.backoff_initial_s, config.backoff_max_s)
        failures = FailureLog()
        scheme = "wss" if self._ssl is not None else "ws"
        url = f"{scheme}://{record.address}{SYNC_PATH}"
        conns = self._table.conns
        while True:
            existing = conns.get(record.node_id or "")
            if existing is not None:  # connected the other way round: wait for it to end
                if existing.record is None:
                    existing.record = record
                await existing.closed.wait()
                continue
            if self.gate is not None and not self.gate.wanted(record):
                record.state = PeerState.STANDBY
                await self.gate.wait_changed()
                continue
            record.state = PeerState.CONNECTING
            close_code: int | None = None
            established = False
            try:
                async with self._session.ws_connect(
                    url,
                    ssl=self._ssl if self._ssl is not None else False,
                    max_msg_size=transport_limit(config.limits),
                    heartbeat=config.heartbeat_s,
                    timeout=aiohttp.ClientWSTimeout(ws_close=2.0),
                ) as ws:
                    channel = WebSocketChannel(ws)
                    try:
                        established = await self._run(
                            channel,
                            True,
                            record,
                            _peer_cert(ws),
                            source=record.address.rsplit(":", 1)[0],
                        )
                    finally:
                        close_code = channel.close_code
            except ConnectionDeclinedError as exc:
                record.last_error = str(exc)
                if exc.permanent:
                    record.state = PeerState.DISCONNECTED
                    return
            except (aiohttp.ClientConnectorCertificateError, aiohttp.ClientSSLError) as exc:
                # The peer's certificate is not from our cluster CA (or expired,
                # or revoked): we refuse it. Logged loudly once per address.
                record.failures += 1
                record.last_error = f"refused: {exc}"
                self._stats.refused += 1
                log.log(
                    failures.failed(),
                    "refused sync peer at %s: TLS verification failed: %s",
                    record.address,
                    exc,
                )
            except (aiohttp.ClientError, OSError, TimeoutError, SyncError) as exc:
                record.failures += 1
                record.last_error = f"{type(exc).__name__}: {exc}"
                log.log(
                    failures.failed(),
                    "cannot reach sync peer %s: %s (retrying with backoff; `edgestate peers` "
                    "shows the last error; failed attempts in a row: %d)",
                    record.address,
                    record.last_error,
                    failures.streak,
                )
            except Exception as exc:
                # Whatever one connection ran into, the dialer must live on: a dead
                # dialer would leave that peer partitioned until a restart.
                record.failures += 1
                record.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("sync connection to %s failed unexpectedly", record.address)
            if self.gate is not None:
                self.gate.dial_ended(record, close_code)
            if record.node_id in conns:
                continue  # the peer is connected the other way round; wait on that
            if established:
                backoff.reset()
                record.last_seen = time.monotonic()
                failures.succeeded()
            elif (
                record.source == "mdns"
                and time.monotonic() - record.last_seen > config.forget_after_s
            ):
                log.info("forgetting peer %s: unreachable since discovery", record.address)
                self._table.records.pop(record.address, None)
                return
            record.state = PeerState.BACKOFF
            await asyncio.sleep(backoff.next_delay())
