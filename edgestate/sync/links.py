"""The daemon's live peer connections: each one made over a ``Channel`` with what
it gets of the node (the ``ConnectionHost``), and all of them ended at shutdown.

``SyncDaemon`` owns one ``Links``; every transport (the websocket server and
dialer, a host's own ``run_channel`` caller) runs its connections through
``run()``, so ``close_all()`` reaches every connection, registered or not.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from edgestate.sync import frames, parts
from edgestate.sync.channel import Channel, CloseCode
from edgestate.sync.config import SyncConfig
from edgestate.sync.connection import CLOSE_WAIT_S, PeerConnection
from edgestate.sync.frames import Collected, Reports
from edgestate.sync.gossip import Gossip
from edgestate.sync.membership import Membership
from edgestate.sync.mesh import Mesh
from edgestate.sync.peers import PeerRecord, PeerTable
from edgestate.sync.report_delta import SentReports
from edgestate.sync.stats import SyncStats

__all__ = ["Links"]

log = logging.getLogger(__name__)


class _Host:
    """What each connection gets of the node (a ``ConnectionHost``)."""

    def __init__(
        self,
        table: PeerTable[PeerConnection],
        gossip: Gossip,
        membership: Membership,
        handshake_lock: asyncio.Lock,
        closing: Callable[[], bool],
        mesh: Mesh | None = None,
    ) -> None:
        self._table = table
        self._mesh = mesh
        self._gossip = gossip
        self._membership = membership
        self.handshake_lock = handshake_lock
        self._closing = closing

    @property
    def closing(self) -> bool:
        return self._closing()

    def connected(self) -> list[str]:
        return self._table.connected()

    async def state_vectors(self) -> dict[str, bytes]:
        return await self._gossip.state_vectors()

    async def report_frames(self, sent: SentReports | None = None) -> list[Reports]:
        return await self._membership.report_frames(sent)

    def collected_docs(self) -> list[str]:
        return self._membership.collected_docs()

    def collected_frames(self, doc: str) -> list[Collected]:
        return self._membership.collected_frames(doc)

    def admit(self, conn: PeerConnection, record: PeerRecord | None) -> None:
        if self._mesh is not None:
            self._mesh.check_inbound(conn)
        self._table.admit(conn, record)

    async def dispatch(self, conn: PeerConnection, frame: frames.Frame) -> None:
        await self._gossip.dispatch(conn, frame)

    def detach(self, conn: PeerConnection) -> None:
        self._table.detach(conn)


class Links:
    """Every peer connection running now, and the node side each one talks to."""

    def __init__(
        self,
        config: SyncConfig,
        *,
        node_id: str,
        cluster_id: str,
        table: PeerTable[PeerConnection],
        gossip: Gossip,
        membership: Membership,
        handshake_lock: asyncio.Lock,
        closing: Callable[[], bool],
        stats: SyncStats,
        assembly_budget: parts.AssemblyBudget,
        mesh: Mesh | None = None,
    ) -> None:
        self._config = config
        self._node_id = node_id
        self._cluster_id = cluster_id
        self._membership = membership
        self._stats = stats
        self._host = _Host(table, gossip, membership, handshake_lock, closing, mesh)
        self._table = table
        self._closing = closing
        # The node's one budget for diffs in parts (the daemon's: NATS shares it).
        self._assemblies = assembly_budget
        # Every connection running now, registered or not (close_all() ends them).
        self._live: set[PeerConnection] = set()

    async def run(
        self,
        channel: Channel,
        dialed_by_us: bool,
        record: PeerRecord | None = None,
        cert: bytes | None = None,
        *,
        source: str | None = None,
    ) -> bool:
        """Run one peer connection over ``channel`` to its end (``SyncDaemon.run_channel``)."""
        conn = PeerConnection(
            channel,
            self._host,
            dialed_by_us=dialed_by_us,
            node_id=self._node_id,
            cluster_id=self._cluster_id,
            limits=self._config.limits,
            coalesce_s=self._config.coalesce_s,
            stats=self._stats,
            cert=cert,
            source=source,
            replica=self._membership.frontier.me,
            assembly_budget=self._assemblies,
        )
        self._live.add(conn)
        try:
            return await conn.run(record)
        finally:
            self._live.discard(conn)
            self._heal_neighbors_of(conn)

    def _heal_neighbors_of(self, conn: PeerConnection) -> None:
        """A link that ended other than by a normal close (the peer died, was cut
        off, shut down): what it pushed us was not relayed to its own neighbours,
        which were to get it from it directly (``Gossip.pump_changes``), and it may
        have gone before it sent them all. Its neighbours linked to us exchange
        state vectors with us now rather than at their anti-entropy turn (links x
        ``anti_entropy_s``). A rotated-out or duplicate link closes normally: its
        peer is still up and sending."""
        if not conn.exchanged or self._closing() or conn.channel.close_code == CloseCode.OK:
            return
        for node_id in conn.neighbors:
            other = self._table.conns.get(node_id)
            if other is not None and other is not conn:
                other.request_sync()

    async def close_all(self) -> None:
        """Tell every live connection to close, all at once: each close waits (up to
        ``CLOSE_WAIT_S``) for that peer's answer."""

        async def close_one(conn: PeerConnection) -> None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(CLOSE_WAIT_S):
                    await conn.close(CloseCode.GOING_AWAY, "node shutting down")

        await asyncio.gather(*(close_one(conn) for conn in list(self._live)))

    async def wait_unwound(self) -> None:
        """Wait (up to ``CLOSE_WAIT_S``) for the connections' own tasks to end: inbound
        handlers may still be unwinding on a mounted app."""
        unwinding = [asyncio.ensure_future(conn.closed.wait()) for conn in self._live]
        if unwinding:
            _, stuck_conns = await asyncio.wait(unwinding, timeout=CLOSE_WAIT_S)
            for waiter in stuck_conns:
                waiter.cancel()
            if stuck_conns:
                log.warning("%d sync connections did not unwind in time", len(stuck_conns))
