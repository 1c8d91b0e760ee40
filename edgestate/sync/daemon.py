"""The sync daemon: gossip of CRDT documents between nodes.

Composition only; the parts are ``websocket`` (server, dialer, the aiohttp
``Channel``), ``links`` (the live connections and what each gets of the node),
``connection`` (one peer connection over any ``Channel``),
``peers`` (the peer table), ``gossip`` (updates, state vectors, anti-entropy)
and ``membership`` (garbage-collection reports and records).

Ownership: ``SyncDaemon.start()`` starts the HTTP server (optional), the
change-stream pump, anti-entropy, gc rounds, discovery and one dialer per known
address; ``close()`` stops every one of them and every peer connection, so
nothing of the daemon runs after it returns. Each connection owns its sender
task.

A node's connect-time exchanges run one at a time (``handshake_lock``, released
on the peer's ``synced``), so a node back from a restart downloads what it
missed once, not once per peer.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
import time
import uuid
from collections.abc import Callable
from types import TracebackType

from aiohttp import web

from edgestate.store import ChangeStream, Store
from edgestate.sync import frames, parts
from edgestate.sync.channel import Channel
from edgestate.sync.config import SyncConfig, parse_address
from edgestate.sync.connection import CLOSE_WAIT_S, PeerConnection
from edgestate.sync.diagnosis import PeerView, seen_ago
from edgestate.sync.discovery import Discovery, Found, MdnsDiscovery, StaticDiscovery
from edgestate.sync.frames import Collected
from edgestate.sync.frontier import FrontierTracker
from edgestate.sync.gossip import Gossip
from edgestate.sync.links import Links
from edgestate.sync.membership import Listener, Membership
from edgestate.sync.mesh import Mesh
from edgestate.sync.nats_link import NatsLink
from edgestate.sync.peers import PeerRecord, PeerStatus, PeerTable
from edgestate.sync.stats import SyncStats
from edgestate.sync.tasks import TaskSet
from edgestate.sync.tls import client_context, load_identity, server_context
from edgestate.sync.websocket import Dialer, Server

__all__ = ["SyncDaemon", "SyncStats"]

log = logging.getLogger(__name__)

# How often refresh_peer_vectors looks for the answers: a LAN round trip is well
# under this, and the doctor waits at most a few seconds in all.
REFRESH_POLL_S = 0.02
# ...and an exchange this recent is fresh enough for it (see refresh_peer_vectors).
REFRESH_RECENT_S = 1.0


class SyncDaemon:
    """Replicates a store's documents with peer nodes.

    Use ``async with SyncDaemon(store, config):`` or ``await start()`` /
    ``await close()``. With ``serve=False`` the daemon runs no server of its own
    and the host mounts ``routes()`` (or ``app()``) into its application; in TLS
    mode that server must use ``server_ssl_context()``. Another transport hands
    its connections to ``run_channel()``.
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
        self._tasks = TaskSet()
        self._closing = False
        self._stream: ChangeStream | None = None
        self._unsubscribe_collected: Callable[[], None] | None = None
        self._unsubscribe_submitted: Callable[[], None] | None = None
        self.handshake_lock = asyncio.Lock()
        self.port: int | None = None
        self._table: PeerTable[PeerConnection] = PeerTable(self.node_id, self._tasks.spawn)
        self._membership = Membership(
            store,
            local_only=frozenset(config.local_only),
            grace_s=config.gc_grace_s,
            listeners=self._listeners,
            expire_s=config.forget_after_s,
        )
        # Diffs in parts being reassembled, from every link of either transport.
        self._assembly_budget = parts.AssemblyBudget(
            config.limits.max_assembly_bytes,
            config.limits.assembly_wait_s,
            on_wait=self._count_assembly_wait,
        )
        # Sites beyond the LAN (docs/nats.md): a second replication path, not a Channel.
        self.nats: NatsLink | None = None
        if config.nats is not None:
            self.nats = NatsLink(
                store,
                config,
                node_id=self.node_id,
                cluster_id=self.cluster_id,
                membership=self._membership,
                assembly_budget=self._assembly_budget,
            )
        self._gossip = Gossip(
            store,
            config,
            table=self._table,
            membership=self._membership,
            stats=self.stats,
            spawn=self._tasks.spawn,
            closing=self._is_closing,
        )
        # The bounded mesh (docs/mesh.md); None is the full mesh.
        self.mesh = (
            Mesh(
                self.node_id,
                self._table,
                max_peers=config.max_peers,
                rotate_s=config.rotate_s,
            )
            if config.max_peers > 0
            else None
        )
        # Every connection, whichever transport brought it, runs through the links.
        self._links = Links(
            config,
            node_id=self.node_id,
            cluster_id=self.cluster_id,
            table=self._table,
            gossip=self._gossip,
            membership=self._membership,
            handshake_lock=self.handshake_lock,
            closing=self._is_closing,
            stats=self.stats,
            mesh=self.mesh,
            assembly_budget=self._assembly_budget,
        )
        self._server = Server(
            self.run_channel,
            config,
            ssl_context=self._server_ssl,
            stats=self.stats,
            closing=self._is_closing,
        )
        self._dialer = Dialer(
            self.run_channel,
            config,
            table=self._table,
            ssl_context=self._client_ssl,
            stats=self.stats,
            closing=self._is_closing,
        )
        self._dialer.gate = self.mesh

    @property
    def frontier(self) -> FrontierTracker:
        """The member reports and garbage-collection frontiers of this node."""
        return self._membership.frontier

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
        await self._dialer.start()
        # The same bound as a peer's queue: if the pump itself falls this far
        # behind, every peer is resynced from state vectors instead. Early: a peer's
        # or Yjs client's update is relayed while its commit is fsynced (its
        # author holds it until synced; see edgestate.store.changes).
        self._stream = self.store.changes(
            maxsize=self.config.limits.peer_queue, early=True, keep=self._gossip.relays
        )
        self._tasks.spawn(self._gossip.pump_changes(self._stream))
        self._unsubscribe_submitted = self.store.subscribe_submitted(self._gossip.relay_submitted)
        self._tasks.spawn(self._gossip.anti_entropy())
        self._tasks.spawn(self._gc_rounds())
        if self.mesh is not None:
            self._tasks.spawn(self.mesh.run())
        if self._serve:
            self.port = await self._server.start()
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
            await source.start(self._dialer.found, self._dialer.lost)
            self._discovery.append(source)
        # A collection is told to peers when it lands, not at the next gc round: until
        # a peer that kept the full history knows it, that peer could still take a
        # stale write the collector refuses (see README, garbage collection).
        # Subscribed last, so a start that fails leaves no listener behind.
        loop = asyncio.get_running_loop()

        def collected(doc: str) -> None:
            loop.call_soon_threadsafe(self._announce_collected, doc)

        self._unsubscribe_collected = self.store.on_collected(collected)
        if self.nats is not None:
            await self.nats.start()
        log.info("sync node %s listening on %s:%s", self.node_id[:16], self.config.host, self.port)

    async def close(self) -> None:
        """Stop everything the daemon started; nothing of it runs afterwards."""
        if self._closing:
            return
        self._closing = True
        if self.nats is not None:
            await self.nats.close()
        for source in self._discovery:
            await source.aclose()
        # Let the tasks unwind first: a connection's own task closes its channel
        # when it ends. Closing a websocket from here while its task is still
        # inside receive() makes aiohttp wait for that reader, which (seen in the
        # demo, three nodes stopping at once) could be forever.
        await asyncio.gather(self._dialer.stop(CLOSE_WAIT_S), self._tasks.stop(CLOSE_WAIT_S))

        # Inbound connections (aiohttp's handler tasks) are told to close, all at
        # once: each close waits for that peer's answer.
        await self._links.close_all()
        await self._server.stop()
        # Inbound handlers may still be unwinding on a mounted app; wait them out.
        await self._links.wait_unwound()
        if self._unsubscribe_submitted is not None:
            self._unsubscribe_submitted()
        if self._unsubscribe_collected is not None:
            self._unsubscribe_collected()
        if self._stream is not None:
            self._stream.close()
        await self._dialer.close_session()

    def _count_assembly_wait(self) -> None:
        self.stats.assembly_waits += 1

    def _is_closing(self) -> bool:
        return self._closing

    def _listeners(self) -> list[Listener]:
        # Told of new reports and collections: the LAN connections and the NATS link.
        out: list[Listener] = list(self._table.connections())
        if self.nats is not None:
            out.append(self.nats)
        return out

    # --- connections -----------------------------------------------------------------

    async def run_channel(
        self,
        channel: Channel,
        dialed_by_us: bool,
        record: PeerRecord | None = None,
        cert: bytes | None = None,
        *,
        source: str | None = None,
    ) -> bool:
        """Run one peer connection over ``channel`` to its end (the transport seam).

        True if the hello exchange succeeded. ``record`` is the peer-table entry
        of a dialed address; ``cert`` the peer's DER certificate, whose
        fingerprint must then match its hello (a transport that authenticates
        peers passes it). Raises ConnectionDeclinedError for a connection not
        wanted (a duplicate, or ourselves). ``source`` is the peer's network
        address (per-source limits: a new node id does not reset them).
        """
        return await self._links.run(channel, dialed_by_us, record, cert, source=source)

    # --- public in-process API -----------------------------------------------------

    def routes(self) -> list[web.RouteDef]:
        """Routes to mount into a host application (``/sync``)."""
        return self._server.routes()

    def app(self) -> web.Application:
        """A sub-application serving the sync endpoint."""
        return self._server.app()

    def server_ssl_context(self) -> ssl.SSLContext | None:
        """The mutual-TLS context a host server must use for ``routes()``."""
        return self._server_ssl

    def peers(self) -> list[PeerStatus]:
        """Snapshots of every known peer: state, last sync time, lag."""
        for conn in self._table.conns.values():
            if conn.record is not None:
                conn.record.queued = len(conn.queue)
        return [record.snapshot() for record in self._table.records.values()]

    def peer_views(self) -> list[PeerView]:
        """Every known peer with its last state vectors and certificate expiry (the doctor)."""
        return [
            PeerView(
                node_id=r.node_id,
                address=r.address,
                source=r.source,
                state=r.state.value,
                connected=r.node_id is not None and r.node_id in self._table.conns,
                seen_ago_s=seen_ago(r.last_seen),
                last_sync=r.last_sync,
                failures=r.failures,
                last_error=r.last_error,
                cert_not_after=r.cert_not_after,
                clock_offset_s=r.clock_offset_s,
                replica=r.replica,
                vectors={doc: dict(v) for doc, v in r.vectors.items()},
                vectors_dropped=r.vectors_dropped,
            )
            for r in self._table.records.values()
        ]

    async def refresh_peer_vectors(self, wait_s: float) -> list[str]:
        """Exchange state vectors with every connected peer now; wait up to ``wait_s``.

        Returns the node ids that answered in time: their ``peer_views`` vectors are
        fresh, not as of the last anti-entropy round.
        """
        # An exchange this recent counts as fresh: repeated calls (a doctor in a
        # loop) cost the peers at most one exchange per REFRESH_RECENT_S, and
        # concurrent ones share one (request_sync only sets a flag).
        started = time.time() - REFRESH_RECENT_S
        asking = {conn.node_id: conn for conn in self._table.connections() if conn.node_id}
        for conn in asking.values():
            if conn.record is None or (conn.record.last_sync or 0.0) < started:
                conn.request_sync()
        deadline = time.monotonic() + wait_s
        while True:
            fresh = [
                node
                for node, conn in asking.items()
                if conn.record is not None and (conn.record.last_sync or 0.0) >= started
            ]
            if len(fresh) == len(asking) or time.monotonic() >= deadline:
                return fresh
            await asyncio.sleep(REFRESH_POLL_S)

    @property
    def assembly_bytes_held(self) -> int:
        """Bytes the node's diffs in parts hold now, of ``max_assembly_bytes``."""
        return self._assembly_budget.used

    @property
    def multicast_available(self) -> bool | None:
        """Whether mDNS runs (None if it was not asked for): the CLI shows it."""
        sources = [d for d in self._discovery if isinstance(d, MdnsDiscovery)]
        return sources[0].available if sources else None

    def connected(self) -> list[str]:
        """Node ids of the peers connected right now."""
        return self._table.connected()

    async def wait_connected(self, count: int) -> None:
        """Return once at least ``count`` peers are connected (bound it with a timeout)."""
        await self._table.wait_connected(count)

    def add_peer(self, address: str, *, node_id: str | None = None) -> None:
        """Dial ``host:port`` (and keep redialing it) from now on; ``node_id``, when
        known ahead (as mDNS tells it), places the peer on the bounded mesh's ring
        before the first contact."""
        host, port = parse_address(address)
        self._dialer.found(Found(host, port, "static", node_id))

    async def anti_entropy_now(self) -> None:
        """Run a state-vector exchange with every connected peer right away."""
        self._gossip.anti_entropy_now()

    async def state_vectors(self) -> dict[str, bytes]:
        """State vectors of every replicated (not local-only) document."""
        return await self._gossip.state_vectors()

    # --- garbage collection ------------------------------------------------------------

    async def _gc_rounds(self) -> None:
        while True:
            # Jittered: nodes started together must not all send reports on the
            # same loop turn, round after round (a bounded mesh's p99, docs/mesh.md).
            period = self.config.gc_round_s
            await asyncio.sleep(random.uniform(period / 2, period * 1.5))
            await self.gc_round()

    async def gc_round(self) -> dict[str, dict[int, int]]:
        """Report our state vectors, advance frontiers, send reports; returns new frontiers."""
        return await self._membership.gc_round()

    def _announce_collected(self, doc: str) -> None:
        if not self._closing:
            self._membership.announce_collected(doc)

    def collected_docs(self) -> list[str]:
        """Replicated documents with a garbage-collection record to tell peers of."""
        return self._membership.collected_docs()

    def collected_frames(self, doc: str) -> list[Collected]:
        """``doc``'s collection record as frames, split to stay under the limit."""
        return self._membership.collected_frames(doc)

    def reports_to_send(self) -> list[dict[int, dict[str, dict[int, int]]]]:
        """Member reports for peers, split by document into frames of bounded size."""
        return self._membership.reports_to_send()

    async def forget_member(self, replica: int) -> bool:
        """Stop holding garbage collection back for a member gone for good.

        Its writes that no other member has are lost to the cluster, and if it
        comes back it is refused as a stale replica until its data is wiped.
        """
        return await self._membership.forget_member(replica)

    def _tls_refused(self, reason: str) -> None:
        self.stats.refusal("a peer", f"TLS handshake failed: {reason.lower().replace('_', ' ')}")
