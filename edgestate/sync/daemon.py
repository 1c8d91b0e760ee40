"""The sync daemon: gossip of CRDT documents between nodes over WebSocket.

Ownership: ``SyncDaemon.start()`` starts the HTTP server (optional), the
change-stream pump, anti-entropy, discovery and one dialer per known address;
``close()`` stops every one of them and every peer connection, so nothing of
the daemon runs after it returns. Each connection owns its sender task.

Data flow: every durable commit of the store arrives as a ``ChangeEvent``; its
update bytes are queued to every connected peer except the one it came from
(``origin``) and that peer's own peers (they got it from it: see
``frames.Peers``), so a full mesh carries each update once per link and a chain
still relays. Applying an update that changes nothing produces no event, which
ends any relay loop. Each sender drains its queue into one ``push`` frame per
send (merging updates of a document), so batching grows with load and a lone
write goes out at once. Received updates are submitted to the store without
waiting for each commit, so they share group commits.

State vectors are exchanged at connect, at anti-entropy and after a queue
overflow; only then are diffs computed. A node's connect-time exchanges run one
at a time (``handshake_lock``, released on the peer's ``synced``), so a node back
from a restart downloads what it missed once, not once per peer.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import hashlib
import logging
import random
import ssl
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import aiohttp
from aiohttp import WSCloseCode, WSMsgType, web
from pycrdt import merge_updates

from edgestate.errors import (
    ConnectionDeclinedError,
    InvalidUpdateError,
    MalformedFrameError,
    OversizedFrameError,
    PeerGoneError,
    PeerRefusedError,
    ProtocolError,
    RateLimitedError,
    StalePeerError,
    StaleReplicaError,
    StoreClosedError,
    SyncError,
    UnexpectedFrameError,
)
from edgestate.store import ChangeStream, Ranges, Store, decode_state_vector
from edgestate.sync import frames
from edgestate.sync.config import Limits, SyncConfig, parse_address
from edgestate.sync.discovery import Discovery, Found, MdnsDiscovery, StaticDiscovery
from edgestate.sync.frames import (
    Collected,
    Diff,
    Hello,
    Peers,
    Push,
    Reports,
    StateVectors,
    Synced,
)
from edgestate.sync.frontier import FrontierTracker
from edgestate.sync.peers import Backoff, PeerRecord, PeerState, PeerStatus, lag
from edgestate.sync.tls import client_context, fingerprint, load_identity, server_context

log = logging.getLogger(__name__)

SYNC_PATH = "/sync"
# ChangeEvent.origin of updates applied from a peer: this prefix and its node id.
PEER_ORIGIN = "peer:"
# Numbers (clients and clocks) one reports frame carries at most: well under
# the frame limit at 9 bytes per msgpack integer.
REPORT_NUMBERS_PER_FRAME = 1 << 20
# Where the member reports live in the store's node-local metadata.
FRONTIER_KEY = "sync.frontier"
# A Yjs v1 update that carries nothing (no structs, empty delete set).
EMPTY_UPDATE = b"\x00\x00"
# The peer must say hello within this long, or the connection is dropped.
HELLO_TIMEOUT_S = 10.0
# How long a catch-up handshake may hold the others back (a peer that never
# answers with ``synced`` must not stall the node).
HANDSHAKE_WAIT_S = 30.0
# Applies submitted to the store ahead of their commit, per connection: enough to
# fill a group commit, few enough to keep back-pressure on the peer's socket.
MAX_INFLIGHT_APPLIES = 64
# A push frame is cut at this many update bytes so frames stay well under the
# frame limit and one slow frame does not hold back everything else.
PUSH_CHUNK_BYTES = 1 << 20
# How long closing waits for one step (tasks unwinding, a websocket's close
# handshake) before it goes on without it: a peer that stops at the same moment
# never answers.
CLOSE_WAIT_S = 3.0
# ...and while this node itself shuts down (the close frame is out either way).
SHUTDOWN_CLOSE_WAIT_S = 0.25
# WebSocket close reasons are capped at 123 bytes by RFC 6455.
_MAX_REASON = 120


@dataclass(slots=True)
class SyncStats:
    """Counters of one daemon (read them in-process; they only grow)."""

    frames_in: int = 0
    frames_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    updates_pushed: int = 0
    diffs_sent: int = 0
    resyncs: int = 0
    queue_overflows: int = 0
    refused: int = 0
    protocol_errors: collections.Counter[str] = field(default_factory=collections.Counter)


WebSocket = web.WebSocketResponse | aiohttp.ClientWebSocketResponse


class _Connection:
    """One WebSocket to one peer: its send lock, outbound queue and sender task."""

    def __init__(self, daemon: SyncDaemon, ws: WebSocket, dialed_by_us: bool) -> None:
        self.daemon = daemon
        self.ws = ws
        self.dialed_by_us = dialed_by_us
        self.node_id: str | None = None
        self.version = 0  # negotiated protocol version
        self.reports_due = False
        self.collected_due: set[str] = set()  # documents whose GC record to send
        self.origin: str | None = None
        self.record: PeerRecord | None = None
        self.queue: collections.deque[tuple[str, bytes]] = collections.deque()
        self.resync = False
        self.sync_requested = False
        self.wake = asyncio.Event()
        self.closed = asyncio.Event()
        self.send_lock = asyncio.Lock()
        self.sender: asyncio.Task[None] | None = None
        # Documents this peer created here (limit), and applies not yet committed.
        self.new_docs: set[str] = set()
        self.inflight: collections.deque[asyncio.Future[bool]] = collections.deque()
        # Node ids the peer says it is connected to (see frames.Peers).
        self.neighbors: frozenset[str] = frozenset()
        self.peers_dirty = True
        self.synced = asyncio.Event()
        self.failed = False
        self.close_reason: str | None = None
        limits = daemon.config.limits
        self._tokens = float(limits.frame_burst)
        self._refill = time.monotonic()

    def enqueue(self, doc: str, update: bytes) -> None:
        """Queue one update; on overflow drop the queue and resync instead."""
        if len(self.queue) >= self.daemon.config.limits.peer_queue:
            self.queue.clear()
            self.resync = True
            self.daemon.stats.queue_overflows += 1
        else:
            self.queue.append((doc, update))
        self.wake.set()

    def request_sync(self) -> None:
        """Ask the sender to start a state-vector exchange (anti-entropy)."""
        self.sync_requested = True
        self.wake.set()

    def take_token(self) -> None:
        limits = self.daemon.config.limits
        now = time.monotonic()
        self._tokens = min(
            float(limits.frame_burst),
            self._tokens + (now - self._refill) * limits.max_frames_per_s,
        )
        self._refill = now
        if self._tokens < 1.0:
            raise RateLimitedError(f"over {limits.max_frames_per_s:g} frames/s")
        self._tokens -= 1.0

    async def send(self, frame: frames.Frame) -> None:
        data = frames.encode(frame)
        async with self.send_lock:
            await self.ws.send_bytes(data)
        self.daemon.stats.frames_out += 1
        self.daemon.stats.bytes_out += len(data)
        if self.record is not None:
            self.record.bytes_out += len(data)

    async def close(self, code: int, reason: str) -> None:
        await self.ws.close(code=code, message=reason.encode()[:_MAX_REASON])

    async def send_collected(self, doc: str) -> None:
        for frame in self.daemon.collected_frames(doc):
            await self.send(frame)

    async def send_reports(self) -> None:
        # A decoder takes MAX_PEERS ids; beyond that, the rest goes in later rounds
        # (forgetting is idempotent), newest ids first being as good as any.
        forgotten = tuple(sorted(self.daemon.frontier.forgotten)[-frames.MAX_PEERS :])
        for chunk in self.daemon.reports_to_send():
            await self.send(Reports(chunk, forgotten))

    async def run_sender(self) -> None:
        """Handshake, then push queued updates; run state-vector exchanges when asked."""
        await self.send(Peers(tuple(self.daemon.connected())))
        self.peers_dirty = False
        if self.version >= frames.REPORTS_VERSION:
            # Before any state vector, so each side is the other's member before
            # a diff flows: a peer that syncs, writes offline and vanishes is
            # still one whose writes garbage collection waits for.
            await self.send_reports()
            self.collected_due.update(self.daemon.collected_docs())
        # One catch-up at a time per node: a node back from a restart gets what it
        # missed from the first peer, and its next peers see it caught up already.
        async with self.daemon.handshake_lock:
            self.synced.clear()
            await self.send(StateVectors(await self.daemon.state_vectors(), reply=False))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(HANDSHAKE_WAIT_S):
                    await self.synced.wait()
        # Again once caught up: frontiers converge sooner.
        self.reports_due = True
        self.wake.set()
        coalesce = self.daemon.config.coalesce_s
        while True:
            await self.wake.wait()
            self.wake.clear()
            if coalesce:
                await asyncio.sleep(coalesce)
            if self.peers_dirty:
                self.peers_dirty = False
                await self.send(Peers(tuple(self.daemon.connected())))
            if self.reports_due and self.version >= frames.REPORTS_VERSION:
                self.reports_due = False
                await self.send_reports()
            if self.collected_due and self.version >= frames.REPORTS_VERSION:
                due, self.collected_due = self.collected_due, set()
                for doc in sorted(due):
                    await self.send_collected(doc)
            if self.resync or self.sync_requested:
                if self.resync:
                    self.daemon.stats.resyncs += 1
                self.resync = self.sync_requested = False
                await self.send(StateVectors(await self.daemon.state_vectors(), reply=True))
            while self.queue:
                batch: dict[str, list[bytes]] = {}
                size = 0
                while self.queue and size < PUSH_CHUNK_BYTES:
                    doc, update = self.queue.popleft()
                    if len(update) > self.daemon.config.limits.max_frame_bytes // 2:
                        # One commit too big for a push frame: a state-vector
                        # exchange sends it (and everything queued) as diffs,
                        # whose limit is larger.
                        self.resync = True
                        self.queue.clear()
                        self.wake.set()
                        break
                    batch.setdefault(doc, []).append(update)
                    size += len(update)
                if not batch:
                    break
                count = sum(len(v) for v in batch.values())
                # Merging several updates of one document is linear in their size
                # (not in the document's) and shrinks what goes on the wire.
                items = tuple(
                    (doc, ups[0] if len(ups) == 1 else merge_updates(*ups))
                    for doc, ups in batch.items()
                )
                await self.send(Push(items))
                self.daemon.stats.updates_pushed += count
                if self.record is not None:
                    self.record.updates_out += count
            if self.record is not None:
                self.record.queued = len(self.queue)


class SyncDaemon:
    """Replicates a store's documents with peer nodes.

    Use ``async with SyncDaemon(store, config):`` or ``await start()`` /
    ``await close()``. With ``serve=False`` the daemon runs no server of its own
    and the host mounts ``routes()`` (or ``app()``) into its application; in TLS
    mode that server must use ``server_ssl_context()``.
    """

    def __init__(
        self,
        store: Store,
        config: SyncConfig,
        *,
        serve: bool = True,
        discovery: list[Discovery] | None = None,
    ) -> None:
        self.store = store
        self.config = config
        self.stats = SyncStats()
        self._serve = serve
        if config.tls is not None:
            identity = load_identity(config.tls)
            self.node_id, self.cluster_id = identity.node_id, identity.cluster_id
            self._server_ssl: ssl.SSLContext | None = server_context(
                config.tls, on_refused=self._tls_refused
            )
            self._client_ssl: ssl.SSLContext | None = client_context(config.tls)
        else:
            self.node_id = config.node_id or f"dev-{uuid.uuid4().hex[:16]}"
            self.cluster_id = config.cluster_id
            self._server_ssl = self._client_ssl = None
        self._extra_discovery = discovery
        self._discovery: list[Discovery] = []
        self._conns: dict[str, _Connection] = {}
        self._live: set[_Connection] = set()
        self._records: dict[str, PeerRecord] = {}
        self._dialers: dict[str, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None
        self._runner: web.AppRunner | None = None
        self._stream: ChangeStream | None = None
        self._changed = asyncio.Condition()
        self._closing = False
        self.handshake_lock = asyncio.Lock()
        self.port: int | None = None
        self.frontier = FrontierTracker.unpack(
            store.get_local(FRONTIER_KEY),
            store.replica_id,
            local=frozenset(config.local_only),
            grace_s=config.gc_grace_s,
        )
        self._frontier_dirty = False
        self._collected_told: dict[str, int] = {}
        self._unsubscribe_collected: Callable[[], None] | None = None
        self._told_forgotten = False

    # --- lifecycle ---------------------------------------------------------------

    async def __aenter__(self) -> SyncDaemon:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def start(self) -> None:
        """Start serving, pumping changes, anti-entropy, discovery and dialing."""
        if self.config.insecure:
            log.warning(
                "SYNC IS RUNNING IN INSECURE MODE: no TLS, no peer authentication, "
                "node id %s. For local development only; never on a shared network.",
                self.node_id,
            )
        self._session = aiohttp.ClientSession()
        # The same bound as a peer's queue: if the pump itself falls this far
        # behind, every peer is resynced from state vectors instead.
        self._stream = self.store.changes(maxsize=self.config.limits.peer_queue)
        self._spawn(self._pump_changes())
        self._spawn(self._anti_entropy())
        self._spawn(self._gc_rounds())
        if self._serve:
            self._runner = web.AppRunner(self.app(), access_log=None, shutdown_timeout=1.0)
            await self._runner.setup()
            site = web.TCPSite(
                self._runner, self.config.host, self.config.port, ssl_context=self._server_ssl
            )
            await site.start()
            self.port = int(self._runner.addresses[0][1])
        sources: list[Discovery] = [StaticDiscovery(self.config.static_peers)]
        if self.config.mdns and self.port is not None:
            sources.append(
                MdnsDiscovery(
                    host=self.config.host,
                    port=self.port,
                    node_id=self.node_id,
                    cluster_id=self.cluster_id,
                    protocol_version=max(frames.PROTOCOL_VERSIONS),
                )
            )
        sources.extend(self._extra_discovery or [])
        for source in sources:
            await source.start(self._found, self._lost)
            self._discovery.append(source)
        # A collection is told to peers when it lands, not at the next gc round: until
        # a peer that kept the full history knows it, that peer could still take a
        # stale write the collector refuses (see README, garbage collection).
        # Subscribed last, so a start that fails leaves no listener behind.
        loop = asyncio.get_running_loop()

        def collected(doc: str) -> None:
            loop.call_soon_threadsafe(self._announce_collected, doc)

        self._unsubscribe_collected = self.store.on_collected(collected)
        log.info("sync node %s listening on %s:%s", self.node_id[:16], self.config.host, self.port)

    async def close(self) -> None:
        """Stop everything the daemon started; nothing of it runs afterwards."""
        if self._closing:
            return
        self._closing = True
        for source in self._discovery:
            await source.aclose()
        tasks = [*self._dialers.values(), *self._tasks]
        for task in tasks:
            task.cancel()
        # Let the tasks unwind first: a connection's own task closes its websocket
        # in _release. Closing a websocket from here while its task is still
        # inside receive() makes aiohttp wait for that reader, which (seen in the
        # demo, three nodes stopping at once) could be forever. asyncio.wait,
        # unlike awaiting each task under suppress(CancelledError), also lets a
        # caller's own timeout cancel this close.
        if tasks:
            _, stuck = await asyncio.wait(tasks, timeout=CLOSE_WAIT_S)
            for task in stuck:
                log.warning(
                    "sync task %s did not stop within %.0f s", task.get_name(), CLOSE_WAIT_S
                )

        # Inbound connections (aiohttp's handler tasks) are told to close, all at
        # once: each close waits for that peer's answer.
        async def close_one(conn: _Connection) -> None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(CLOSE_WAIT_S):
                    await conn.close(WSCloseCode.GOING_AWAY, "node shutting down")

        await asyncio.gather(*(close_one(conn) for conn in list(self._live)))
        if self._runner is not None:
            await self._runner.cleanup()
        # Inbound handlers may still be unwinding on a mounted app; wait them out.
        unwinding = [asyncio.ensure_future(conn.closed.wait()) for conn in self._live]
        if unwinding:
            _, stuck_conns = await asyncio.wait(unwinding, timeout=CLOSE_WAIT_S)
            for waiter in stuck_conns:
                waiter.cancel()
            if stuck_conns:
                log.warning("%d sync connections did not unwind in time", len(stuck_conns))
        if self._unsubscribe_collected is not None:
            self._unsubscribe_collected()
        if self._stream is not None:
            self._stream.close()
        if self._session is not None:
            await self._session.close()

    # --- public in-process API -----------------------------------------------------

    def routes(self) -> list[web.RouteDef]:
        """Routes to mount into a host application (``/sync``)."""
        return [web.get(SYNC_PATH, self._handle_inbound)]

    def app(self) -> web.Application:
        """A sub-application serving the sync endpoint."""
        application = web.Application()
        application.add_routes(self.routes())
        return application

    def server_ssl_context(self) -> ssl.SSLContext | None:
        """The mutual-TLS context a host server must use for ``routes()``."""
        return self._server_ssl

    def peers(self) -> list[PeerStatus]:
        """Snapshots of every known peer: state, last sync time, lag."""
        for conn in self._conns.values():
            if conn.record is not None:
                conn.record.queued = len(conn.queue)
        return [record.snapshot() for record in self._records.values()]

    @property
    def multicast_available(self) -> bool | None:
        """Whether mDNS runs (None if it was not asked for): the CLI shows it."""
        sources = [d for d in self._discovery if isinstance(d, MdnsDiscovery)]
        return sources[0].available if sources else None

    def connected(self) -> list[str]:
        """Node ids of the peers connected right now."""
        return list(self._conns)

    async def wait_connected(self, count: int) -> None:
        """Return once at least ``count`` peers are connected (bound it with a timeout)."""
        async with self._changed:
            await self._changed.wait_for(lambda: len(self._conns) >= count)

    def add_peer(self, address: str) -> None:
        """Dial ``host:port`` (and keep redialing it) from now on."""
        host, port = parse_address(address)
        self._found(Found(host, port, "static"))

    async def anti_entropy_now(self) -> None:
        """Run a state-vector exchange with every connected peer right away."""
        for conn in list(self._conns.values()):
            conn.request_sync()

    async def state_vectors(self) -> dict[str, bytes]:
        """State vectors of every replicated (not local-only) document."""
        out: dict[str, bytes] = {}
        for doc in self.store.documents():
            if doc not in self.config.local_only:
                out[doc] = await self.store.astate_vector(doc)
        return out

    # --- discovery and dialing -------------------------------------------------------

    def _found(self, found: Found) -> None:
        if self._closing:
            return
        address = f"{found.host}:{found.port}"
        record = self._records.get(address)
        if record is None:
            # A peer that dialed us first becomes dialable: one record per peer.
            record = self._records.pop(f"inbound:{found.node_id}", None)
            if record is None:
                record = PeerRecord(address=address, source=found.source, node_id=found.node_id)
            record.address, record.source = address, found.source
            self._records[address] = record
        record.last_seen = time.monotonic()
        if address not in self._dialers:
            task = asyncio.get_running_loop().create_task(self._dial_loop(record))
            self._dialers[address] = task
            task.add_done_callback(functools.partial(self._dialer_done, address))

    def _dialer_done(self, address: str, task: asyncio.Task[None]) -> None:
        if self._dialers.get(address) is task:
            del self._dialers[address]

    def _lost(self, found: Found) -> None:
        # The dialer forgets the peer once it stays unreachable past forget_after_s.
        log.info("discovery: %s:%s went away", found.host, found.port)

    async def _dial_loop(self, record: PeerRecord) -> None:
        assert record.address is not None and self._session is not None
        backoff = Backoff(self.config.backoff_initial_s, self.config.backoff_max_s)
        scheme = "wss" if self._client_ssl is not None else "ws"
        url = f"{scheme}://{record.address}{SYNC_PATH}"
        while True:
            existing = self._conns.get(record.node_id or "")
            if existing is not None:  # connected the other way round: wait for it to end
                if existing.record is None:
                    existing.record = record
                await existing.closed.wait()
                continue
            record.state = PeerState.CONNECTING
            established = False
            try:
                async with self._session.ws_connect(
                    url,
                    ssl=self._client_ssl if self._client_ssl is not None else False,
                    max_msg_size=_transport_limit(self.config.limits),
                    heartbeat=self.config.heartbeat_s,
                    timeout=aiohttp.ClientWSTimeout(ws_close=2.0),
                ) as ws:
                    established = await self._run(ws, True, record, _peer_cert(ws))
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
                self.stats.refused += 1
                (log.debug if record.failures > 1 else log.warning)(
                    "refused sync peer at %s: TLS verification failed: %s", record.address, exc
                )
            except (aiohttp.ClientError, OSError, TimeoutError, SyncError) as exc:
                record.failures += 1
                record.last_error = f"{type(exc).__name__}: {exc}"
                log.debug("dial %s failed: %s", record.address, record.last_error)
            except Exception as exc:
                # Whatever one connection ran into, the dialer must live on: a dead
                # dialer would leave that peer partitioned until a restart.
                record.failures += 1
                record.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("sync connection to %s failed unexpectedly", record.address)
            if record.node_id in self._conns:
                continue  # the peer is connected the other way round; wait on that
            if established:
                backoff.reset()
                record.last_seen = time.monotonic()
            elif (
                record.source == "mdns"
                and time.monotonic() - record.last_seen > self.config.forget_after_s
            ):
                log.info("forgetting peer %s: unreachable since discovery", record.address)
                self._records.pop(record.address, None)
                return
            record.state = PeerState.BACKOFF
            await asyncio.sleep(backoff.next_delay())

    async def _handle_inbound(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(
            max_msg_size=_transport_limit(self.config.limits),
            heartbeat=self.config.heartbeat_s,
        )
        if self._closing:
            raise web.HTTPServiceUnavailable(reason="node shutting down")
        cert = None
        if self._server_ssl is not None:
            ssl_obj = request.transport.get_extra_info("ssl_object") if request.transport else None
            cert = ssl_obj.getpeercert(binary_form=True) if ssl_obj is not None else None
            if cert is None:
                self._refuse_log(request.remote, "no client certificate")
                raise web.HTTPForbidden(reason="client certificate required")
        await ws.prepare(request)
        with contextlib.suppress(ConnectionDeclinedError):
            await self._run(ws, False, None, cert)
        return ws

    # --- one connection ------------------------------------------------------------

    async def _run(
        self, ws: WebSocket, dialed_by_us: bool, record: PeerRecord | None, cert: bytes | None
    ) -> bool:
        """Run one connection to its end; True if the hello exchange succeeded."""
        conn = _Connection(self, ws, dialed_by_us)
        self._live.add(conn)
        established = False
        try:
            await conn.send(Hello(frames.PROTOCOL_VERSIONS, self.node_id, self.cluster_id))
            async with asyncio.timeout(HELLO_TIMEOUT_S):
                hello = await self._receive(conn)
            if not isinstance(hello, Hello):
                raise UnexpectedFrameError(f"expected hello, got {type(hello).__name__}")
            conn.version = self._check_hello(hello, cert)
            conn.node_id, conn.origin = hello.node, f"{PEER_ORIGIN}{hello.node}"
            self._admit(conn, record)
            established = True
            conn.sender = asyncio.get_running_loop().create_task(conn.run_sender())
            while True:
                await self._dispatch(conn, await self._receive(conn))
        except PeerGoneError:
            if conn.ws.close_code == WSCloseCode.POLICY_VIOLATION:
                reason = conn.close_reason or "no reason given"
                log.warning("peer %s refused this node: %s", conn.node_id or "?", reason)
                if record is not None:
                    record.last_error = f"refused by peer: {reason}"
        except PeerRefusedError as exc:
            self._refuse_log(conn.node_id or "peer", str(exc))
            await conn.close(WSCloseCode.POLICY_VIOLATION, f"refused: {exc}")
        except ProtocolError as exc:
            await self._protocol_failure(conn, exc)
        except TimeoutError:
            self.stats.protocol_errors["hello_timeout"] += 1
            await conn.close(WSCloseCode.PROTOCOL_ERROR, "no hello in time")
        except StoreClosedError:
            await conn.close(WSCloseCode.GOING_AWAY, "node shutting down")
        except ConnectionDeclinedError as exc:
            # Not the peer's fault (a duplicate, or ourselves): a normal close.
            await conn.close(WSCloseCode.OK, str(exc))
            raise
        except (aiohttp.ClientError, ConnectionError) as exc:
            log.debug("sync connection to %s lost: %s", conn.node_id, exc)
        finally:
            await self._release(conn)
        return established

    async def _release(self, conn: _Connection) -> None:
        try:
            if conn.sender is not None:
                conn.sender.cancel()
                await asyncio.wait([conn.sender])  # its outcome is of no interest now
            for pending in conn.inflight:
                # Already handed to the store's writer: let them land, ignore failures.
                with contextlib.suppress(Exception):
                    await pending
            if not conn.ws.closed:
                # While this node shuts down, a peer stopping at the same moment may
                # never answer the close: the frame is sent, waiting on it only
                # delayed every demo stop by CLOSE_WAIT_S.
                wait = SHUTDOWN_CLOSE_WAIT_S if self._closing else CLOSE_WAIT_S
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(wait):
                        await conn.close(WSCloseCode.GOING_AWAY, "connection ended")
        finally:
            # Even when cancelled part way (the host app stopping its handlers): a
            # dead connection left registered would refuse the peer's next one as a
            # duplicate, and close() waits on ``closed``.
            registered = conn.node_id is not None and self._conns.get(conn.node_id) is conn
            if registered:
                assert conn.node_id is not None
                del self._conns[conn.node_id]
                self._peers_changed()
                if conn.record is not None:
                    conn.record.state = (
                        PeerState.BACKOFF if conn.record.address else PeerState.DISCONNECTED
                    )
                    conn.record.connected_since = None
                    conn.record.last_seen = time.monotonic()
            self._live.discard(conn)
            conn.closed.set()
        if registered:
            async with self._changed:
                self._changed.notify_all()

    async def _protocol_failure(self, conn: _Connection, exc: ProtocolError) -> None:
        """Count, log and close: the one way a peer's bad frame ends its connection."""
        if conn.failed:
            return
        conn.failed = True
        self.stats.protocol_errors[exc.code] += 1
        log.warning("closing sync connection to %s: %s", conn.node_id or "peer", exc)
        code = (
            WSCloseCode.MESSAGE_TOO_BIG
            if isinstance(exc, OversizedFrameError)
            else WSCloseCode.PROTOCOL_ERROR
        )
        await conn.close(code, f"{exc.code}: {exc}")

    def _check_hello(self, hello: Hello, cert: bytes | None) -> int:
        version = frames.negotiate(frames.PROTOCOL_VERSIONS, hello.versions)
        if version is None:
            raise PeerRefusedError(
                f"no common protocol version (ours {frames.PROTOCOL_VERSIONS}, "
                f"theirs {hello.versions})"
            )
        if hello.cluster != self.cluster_id:
            raise PeerRefusedError(f"peer belongs to cluster {hello.cluster[:16]}, not ours")
        if cert is not None and fingerprint(cert) != hello.node:
            raise PeerRefusedError("hello node id does not match the certificate fingerprint")
        if hello.node == self.node_id:
            raise ConnectionDeclinedError("connected to ourselves", permanent=True)
        return version

    def _admit(self, conn: _Connection, record: PeerRecord | None) -> None:
        """Register ``conn``; of two connections between the same pair keep one."""
        assert conn.node_id is not None
        existing = self._conns.get(conn.node_id)
        if existing is not None:
            # Both sides keep the connection dialed by the smaller node id, so
            # simultaneous dials settle on the same one without a round trip.
            keep_new = conn.dialed_by_us == (self.node_id < conn.node_id)
            if not keep_new:
                if record is not None:
                    self._adopt(existing, record)
                raise ConnectionDeclinedError("duplicate connection")
            existing.node_id = None  # its release must not unregister the new one
            self._spawn(existing.close(WSCloseCode.OK, "duplicate connection"))
        if record is None:
            record = next(
                (r for r in self._records.values() if r.node_id == conn.node_id), None
            ) or self._records.setdefault(
                f"inbound:{conn.node_id}", PeerRecord(address=None, source="inbound")
            )
        self._adopt(conn, record)
        self._conns[conn.node_id] = conn
        self._peers_changed()
        self._spawn(self._notify())

    def _adopt(self, conn: _Connection, record: PeerRecord) -> None:
        """Make ``record`` the one table entry of ``conn``'s peer (dialable beats inbound)."""
        assert conn.node_id is not None
        inbound = self._records.get(f"inbound:{conn.node_id}")
        if inbound is not None and inbound is not record and record.address is not None:
            del self._records[f"inbound:{conn.node_id}"]
            record.last_sync = record.last_sync or inbound.last_sync
            record.lag_by_doc = record.lag_by_doc or inbound.lag_by_doc
        record.node_id = conn.node_id
        record.state = PeerState.CONNECTED
        record.connected_since = record.connected_since or time.time()
        record.last_seen = time.monotonic()
        conn.record = record

    def _peers_changed(self) -> None:
        for other in self._conns.values():
            other.peers_dirty = True
            other.wake.set()

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _receive(self, conn: _Connection) -> frames.Frame:
        msg = await conn.ws.receive()
        if msg.type == WSMsgType.BINARY:
            data: bytes = msg.data
            self.stats.frames_in += 1
            self.stats.bytes_in += len(data)
            if conn.record is not None:
                conn.record.bytes_in += len(data)
            conn.take_token()
            limits = self.config.limits
            return frames.decode(
                data,
                max_bytes=limits.max_frame_bytes,
                max_docs=limits.max_documents_per_frame,
                max_diff_bytes=limits.max_diff_frame_bytes,
            )
        if msg.type == WSMsgType.ERROR:
            exc = conn.ws.exception()
            if isinstance(exc, aiohttp.WebSocketError) and exc.code == WSCloseCode.MESSAGE_TOO_BIG:
                raise OversizedFrameError(str(exc))
            raise MalformedFrameError(f"websocket error: {exc}")
        if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
            if msg.type == WSMsgType.CLOSE and isinstance(msg.extra, str):
                conn.close_reason = msg.extra
            raise PeerGoneError
        raise UnexpectedFrameError(f"{msg.type.name.lower()} frame; the protocol is binary")

    async def _dispatch(self, conn: _Connection, frame: frames.Frame) -> None:
        try:
            await self._dispatch_frame(conn, frame)
        except StaleReplicaError as exc:
            raise StalePeerError(str(exc)) from exc
        except (ValueError, InvalidUpdateError) as exc:
            # Bad bytes inside a well-formed frame (an update pycrdt cannot merge,
            # a state vector it cannot read) are the peer's fault like any other
            # malformed frame: close that connection, count it, keep serving.
            raise MalformedFrameError(
                f"{type(frame).__name__.lower()} frame carries bad data: {exc}"
            ) from exc

    async def _dispatch_frame(self, conn: _Connection, frame: frames.Frame) -> None:
        match frame:
            case Push(updates):
                by_doc: dict[str, list[bytes]] = {}
                for doc, update in updates:
                    by_doc.setdefault(doc, []).append(update)
                for doc, ups in by_doc.items():
                    await self._apply(conn, doc, ups[0] if len(ups) == 1 else merge_updates(*ups))
            case Diff(doc, update):
                await self._apply(conn, doc, update)
            case StateVectors(docs, reply):
                if conn.version < frames.REPORTS_VERSION and conn.node_id is not None:
                    self._report_for_legacy(conn.node_id, docs)
                await self._drain_applies(conn)
                await self._answer_state_vectors(conn, docs, reply)
            case Synced():
                await self._drain_applies(conn)
                conn.synced.set()
            case Peers(nodes):
                conn.neighbors = frozenset(nodes)
            case Collected(doc, ranges, rehung, floor):
                if conn.version < frames.REPORTS_VERSION:
                    raise UnexpectedFrameError(
                        f"collected frame in protocol version {conn.version}"
                    )
                if doc not in self.config.local_only:
                    await self._drain_applies(conn)  # the diff it follows lands first
                    await self.store.amerge_gc(
                        doc,
                        Ranges.from_wire(ranges).normalize(),
                        Ranges.from_wire(rehung).normalize(),
                        floor,
                    )
            case Reports(members, forgotten):
                if conn.version < frames.REPORTS_VERSION:
                    raise UnexpectedFrameError(f"reports frame in protocol version {conn.version}")
                await self._learn_forgotten(forgotten, conn.node_id)
                # Only documents this node holds: a peer cannot grow the table
                # with names that exist nowhere (found in review).
                held = set(self.store.documents())
                members = {m: {d: v for d, v in r.items() if d in held} for m, r in members.items()}
                if conn.node_id is not None:
                    # A node that spoke version 1 and now reports for itself: its
                    # stand-in member would hold collection back for good.
                    legacy = legacy_member_id(conn.node_id)
                    # Even if relayed back in this very frame (found in review).
                    if legacy in self.frontier.reports:
                        log.info("retiring the version-1 stand-in of %s", conn.node_id[:16])
                        self.frontier.forget(legacy)
                        self._frontier_dirty = True
                if self.frontier.merge(members):
                    self._frontier_dirty = True
            case Hello():
                raise UnexpectedFrameError("second hello on one connection")

    async def _apply(self, conn: _Connection, doc: str, update: bytes) -> None:
        if doc in self.config.local_only:
            # A peer configured differently; its copy stays with it.
            return
        if update == EMPTY_UPDATE:
            return
        if conn.record is not None:
            conn.record.updates_in += 1
        # Counted per peer, not per connection, so reconnecting does not reset it
        # (found in review).
        created = conn.record.new_docs if conn.record is not None else conn.new_docs
        if doc not in created and not self.store.has_document(doc):
            created.add(doc)
            if len(created) > self.config.limits.max_new_documents:
                raise RateLimitedError(
                    f"peer created over {self.config.limits.max_new_documents} documents"
                )
        # Submitted without waiting for the commit: the store's writer keeps
        # submission order and folds queued applies into one group commit.
        pending = asyncio.ensure_future(
            self.store.aapply_update(doc, update, origin=conn.origin, create=True)
        )
        # A bad update must end the connection now, not when the next frame comes.
        pending.add_done_callback(functools.partial(self._apply_done, conn, doc))
        conn.inflight.append(pending)
        while conn.inflight and (
            conn.inflight[0].done() or len(conn.inflight) > MAX_INFLIGHT_APPLIES
        ):
            await self._settle(conn.inflight.popleft(), doc)

    def _apply_done(self, conn: _Connection, doc: str, pending: asyncio.Future[bool]) -> None:
        if pending.cancelled():
            return
        exc = pending.exception()
        if isinstance(exc, InvalidUpdateError) and not self._closing:
            self._spawn(self._protocol_failure(conn, _update_error(doc, exc)))

    async def _drain_applies(self, conn: _Connection) -> None:
        while conn.inflight:
            await self._settle(conn.inflight.popleft(), "a document")

    @staticmethod
    async def _settle(pending: asyncio.Future[bool], doc: str) -> None:
        try:
            await pending
        except InvalidUpdateError as exc:
            raise _update_error(doc, exc) from exc

    async def _answer_state_vectors(
        self, conn: _Connection, theirs: dict[str, bytes], reply: bool
    ) -> None:
        ours = await self.state_vectors()
        lags: dict[str, int] = {}
        for doc, sv in ours.items():
            remote = theirs.get(doc)
            if remote is not None:
                lags[doc] = lag(sv, remote)
            # Equal state vectors can still hide a delete the other side lacks
            # (deletes do not advance clocks), so the diff is always computed; it
            # is then just the delete set.
            update = await self.store.adiff(doc, remote)
            if update != EMPTY_UPDATE or remote is None:
                await conn.send(Diff(doc, update))
                self.stats.diffs_sent += 1
                if conn.version >= frames.REPORTS_VERSION:
                    # Right behind the history it describes (see frames.Collected).
                    await conn.send_collected(doc)
        await conn.send(Synced())
        if conn.record is not None:
            conn.record.lag_by_doc = lags
            conn.record.last_sync = time.time()
        if reply:
            await conn.send(StateVectors(ours, reply=False))

    # --- background tasks ------------------------------------------------------------

    async def _pump_changes(self) -> None:
        stream = self._stream
        assert stream is not None
        while True:
            event = await stream.get()
            if event is None:
                return
            if stream.reset_overflow():
                # Events were dropped before we saw them: heal from state vectors.
                for conn in self._conns.values():
                    conn.resync = True
                    conn.wake.set()
            if event.doc in self.config.local_only:
                continue
            # The peer an update came from, and that peer's own peers, have it.
            came_from = (
                self._conns.get(event.origin.removeprefix(PEER_ORIGIN))
                if event.origin and event.origin.startswith(PEER_ORIGIN)
                else None
            )
            covered = came_from.neighbors if came_from is not None else frozenset()
            for conn in self._conns.values():
                if conn.origin != event.origin and conn.node_id not in covered:
                    conn.enqueue(event.doc, event.update)

    async def _anti_entropy(self) -> None:
        period = self.config.anti_entropy_s
        while True:
            await asyncio.sleep(random.uniform(period / 2, period * 1.5))
            if self._conns:
                random.choice(list(self._conns.values())).request_sync()
            self._forget_departed()

    async def _gc_rounds(self) -> None:
        while True:
            await asyncio.sleep(self.config.gc_round_s)
            await self.gc_round()

    async def gc_round(self) -> dict[str, dict[int, int]]:
        """Report our state vectors, advance frontiers, send reports; returns new frontiers."""
        own = {
            doc: decode_state_vector(await self.store.astate_vector(doc))
            for doc in self.store.documents()
        }
        if self.frontier.merge({self.frontier.me: own}):
            self._frontier_dirty = True
        # Mutated by merge() while we await below, so iterate a copy.
        frontiers = self.frontier.round(list(own))
        for doc, vector in frontiers.items():
            await self.store.aset_gc_frontier(doc, vector)
        if self._frontier_dirty:
            self._frontier_dirty = False
            await self.store.aput_local(FRONTIER_KEY, self.frontier.pack())
        changed = self._collected_changes()
        for conn in self._conns.values():
            conn.reports_due = True
            conn.collected_due |= changed
            conn.wake.set()
        return frontiers

    def _announce_collected(self, doc: str) -> None:
        if self._closing:
            return
        changed = self._collected_changes([doc])
        for conn in self._conns.values():
            if changed:
                conn.collected_due |= changed
                conn.wake.set()

    def collected_docs(self) -> list[str]:
        """Replicated documents with a garbage-collection record to tell peers of."""
        out = []
        for doc in self.store.documents():
            record = self.store.gc_record(doc) if doc not in self.config.local_only else None
            if record is not None and record.ranges.by_client:
                out.append(doc)
        return out

    def _collected_changes(self, docs: list[str] | None = None) -> set[str]:
        """Documents whose record changed since last told (collected here, or
        merged from a peer: passing it on spreads it hop by hop)."""
        changed = set()
        for doc in self.store.documents() if docs is None else docs:
            if doc in self.config.local_only or not self.store.has_document(doc):
                continue
            record = self.store.gc_record(doc)
            if record is None or not record.ranges.by_client:
                continue
            # What peers learn from it only: not the frontier, which moves each round.
            marker = hash(
                (str(record.ranges), str(record.rehung), str(sorted(record.floor.items())))
            )
            if self._collected_told.get(doc) != marker:
                self._collected_told[doc] = marker
                changed.add(doc)
        return changed

    def collected_frames(self, doc: str) -> list[Collected]:
        """``doc``'s collection record as frames, split to stay under the limit."""
        record = self.store.gc_record(doc) if self.store.has_document(doc) else None
        if record is None or not record.ranges.by_client:
            return []
        out: list[Collected] = []
        # Under both of the decoder's limits (numbers, and clients: found in review,
        # a record of many short-lived Yjs clients was one frame the peer refused).
        budget = frames.MAX_RUN_NUMBERS // 2
        most_clients = frames.MAX_SV_CLIENTS // 2
        for field_name, runs in (("ranges", record.ranges), ("rehung", record.rehung)):
            chunk: dict[int, list[int]] = {}
            size = 0
            for client, flat in runs.to_wire().items():
                for i in range(0, len(flat), budget):
                    part = flat[i : i + budget]
                    if chunk and (size + len(part) > budget or len(chunk) >= most_clients):
                        out.append(_collected(doc, field_name, chunk))
                        chunk, size = {}, 0
                    chunk.setdefault(client, []).extend(part)
                    size += len(part)
            if chunk:
                out.append(_collected(doc, field_name, chunk))
        floor = sorted(record.floor.items())
        for i in range(0, len(floor), most_clients):
            out.append(Collected(doc, {}, {}, dict(floor[i : i + most_clients])))
        return out

    def reports_to_send(self) -> list[dict[int, dict[str, dict[int, int]]]]:
        """Member reports for peers, split by document into frames of bounded size
        (found in review: members x documents x writers outgrew the frame limit
        and the peer dropped every connection). Reports merge by maximum, so any
        split is as good as one frame. Local-only documents never leave the node."""
        docs = sorted({d for r in self.frontier.reports.values() for d in r})
        docs = [d for d in docs if d not in self.config.local_only]
        per_frame = max(1, REPORT_NUMBERS_PER_FRAME // max(1, self._report_width()))
        chunks = []
        for i in range(0, max(1, len(docs)), per_frame):
            part = set(docs[i : i + per_frame])
            chunks.append(
                {
                    member: {d: v for d, v in reports.items() if d in part}
                    for member, reports in self.frontier.reports.items()
                }
            )
        return chunks

    def _report_width(self) -> int:
        """Numbers one document's reports take across members (its widest); a
        document name (up to 64 bytes, repeated per member) counts as 8 numbers
        (found in review: empty vectors and long names outgrew a frame)."""
        return sum(
            2 * max((len(v) for v in r.values()), default=0) + 8
            for r in self.frontier.reports.values()
        )

    def _report_for_legacy(self, node_id: str, docs: dict[str, bytes]) -> None:
        """Report a version-1 peer's state vectors for it: it never sends reports.

        Otherwise it would be no member at all, nobody's frontier would wait for
        it, and its writes could build on what others collected. Keyed by a
        48-bit id derived from its node id (it has no replica id on the wire).
        """
        member = legacy_member_id(node_id)
        vectors = {doc: decode_state_vector(sv) for doc, sv in docs.items()}
        if self.frontier.merge({member: vectors}):
            self._frontier_dirty = True

    async def _learn_forgotten(self, forgotten: tuple[int, ...], source: str | None) -> None:
        """Forget what a peer says an operator forgot (forgetting is cluster-wide)."""
        me = self.frontier.me
        if me in forgotten and not self._told_forgotten:
            # The cluster stopped waiting for us: what we hold that others lack
            # may build on history they collected. Said once, loudly; the peers
            # refuse our stale writes by name.
            self._told_forgotten = True
            log.error(
                "peer %s says this node (replica %d) was forgotten by the cluster: its "
                "data must be wiped before it rejoins",
                source,
                me,
            )
        new = [m for m in forgotten if m != me and m not in self.frontier.forgotten]
        for member in new:
            log.warning("forgetting member %d (forgotten on %s)", member, source)
            self.frontier.forget(member)
        if new:
            await self.store.aput_local(FRONTIER_KEY, self.frontier.pack())

    async def forget_member(self, replica: int) -> bool:
        """Stop holding garbage collection back for a member gone for good.

        Its writes that no other member has are lost to the cluster, and if it
        comes back it is refused as a stale replica until its data is wiped.
        """
        known = self.frontier.forget(replica)
        await self.store.aput_local(FRONTIER_KEY, self.frontier.pack())
        return known

    def _forget_departed(self) -> None:
        """Drop peers that only ever dialed us and have been gone a while."""
        cutoff = time.monotonic() - self.config.forget_after_s
        for key, record in list(self._records.items()):
            if record.address is None and record.state is PeerState.DISCONNECTED:
                if record.last_seen < cutoff:
                    del self._records[key]

    def _spawn(self, coro: Awaitable[Any]) -> None:
        async def run() -> None:
            await coro

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _tls_refused(self, reason: str) -> None:
        self._refuse_log("a peer", f"TLS handshake failed: {reason.lower().replace('_', ' ')}")

    def _refuse_log(self, who: object, reason: str) -> None:
        self.stats.refused += 1
        log.warning("refused sync connection from %s: %s", who, reason)


def _collected(doc: str, field_name: str, runs: dict[int, list[int]]) -> Collected:
    if field_name == "ranges":
        return Collected(doc, runs, {}, {})
    return Collected(doc, {}, runs, {})


def legacy_member_id(node_id: str) -> int:
    """The member id a version-1 peer is reported under (see _report_for_legacy)."""
    return int.from_bytes(hashlib.sha256(node_id.encode()).digest()[:6], "big")


def _update_error(doc: str, exc: InvalidUpdateError) -> ProtocolError:
    if isinstance(exc, StaleReplicaError):
        return StalePeerError(str(exc))
    return MalformedFrameError(f"invalid update for {doc}: {exc}")


def _transport_limit(limits: Limits) -> int:
    # aiohttp drops a message over its own limit by cutting the TCP connection,
    # so the peer never learns why. Up to twice our limit we read the frame and
    # close with 1009 and a reason; beyond that aiohttp's cut bounds our memory.
    return 2 * max(limits.max_frame_bytes, limits.max_diff_frame_bytes)


def _peer_cert(ws: aiohttp.ClientWebSocketResponse) -> bytes | None:
    ssl_obj = ws.get_extra_info("ssl_object")
    if ssl_obj is None:
        return None
    cert: bytes | None = ssl_obj.getpeercert(binary_form=True)
    return cert
