"""One peer connection: hello, rate limit, decoding, outbound queue and batching.

A ``PeerConnection`` runs over a ``Channel`` (any transport) and asks the node
around it for everything else through ``ConnectionHost``: admission to the peer
table, what to do with each frame, what to send at handshake time. It owns its
sender task: ``run()`` starts it and stops it before returning.

Each sender drains its queue into one ``push`` frame per send (merging updates
of a document: ``push``), so batching grows with load and a lone write goes out
at once. A queue that overflows is dropped and replaced by a state-vector
exchange. What inbound frames must pass (hello, rate, size) is ``admission``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Iterable
from typing import Protocol

from edgestate.errors import (
    AssemblyBusyError,
    ConnectionDeclinedError,
    MeshFullError,
    OversizedFrameError,
    PeerGoneError,
    PeerRefusedError,
    ProtocolError,
    StoreClosedError,
    UnexpectedFrameError,
)
from edgestate.sync import frames, memory, parts
from edgestate.sync.admission import PRE_HELLO_MAX_BYTES as PRE_HELLO_MAX_BYTES  # kept importable
from edgestate.sync.admission import FrameBudget, check_frame_size, check_hello
from edgestate.sync.channel import Channel, CloseCode
from edgestate.sync.config import Limits
from edgestate.sync.frames import About, Collected, Hello, Peers, Reports, StateVectors
from edgestate.sync.peers import PeerRecord
from edgestate.sync.push import take_push
from edgestate.sync.report_delta import SentReports
from edgestate.sync.stats import SyncStats
from edgestate.sync.tls import cert_not_after
from edgestate.sync.turn_push import TurnPush

log = logging.getLogger(__name__)

# ChangeEvent.origin of updates applied from a peer: this prefix and its node id.
PEER_ORIGIN = "peer:"
# The peer must say hello within this long, or the connection is dropped.
HELLO_TIMEOUT_S = 10.0
# How long a catch-up handshake may hold the others back (a peer that never
# answers with ``synced`` must not stall the node).
HANDSHAKE_WAIT_S = 30.0
# How long closing waits for one step (tasks unwinding, a channel's close
# handshake) before it goes on without it: a peer that stops at the same moment
# never answers.
CLOSE_WAIT_S = 3.0
# ...and while this node itself shuts down (the close frame is out either way).
SHUTDOWN_CLOSE_WAIT_S = 0.25


class ConnectionHost(Protocol):
    """What a connection needs from the node around it (``SyncDaemon`` is one)."""

    @property
    def closing(self) -> bool:
        """Whether the node is shutting down."""
        ...

    @property
    def handshake_lock(self) -> asyncio.Lock:
        """Held through one connect-time catch-up at a time."""
        ...

    def connected(self) -> list[str]:
        """Node ids connected right now (the ``peers`` frame)."""
        ...

    async def state_vectors(self) -> dict[str, bytes]:
        """State vectors of the replicated documents."""
        ...

    async def report_frames(self, sent: SentReports | None = None) -> list[Reports]:
        """Member reports to send in bounded frames (what grew since ``sent``)."""
        ...

    def collected_docs(self) -> list[str]:
        """Documents whose collection record a new peer is told of."""
        ...

    def collected_frames(self, doc: str) -> list[Collected]:
        """``doc``'s collection record as frames."""
        ...

    def admit(self, conn: PeerConnection, record: PeerRecord | None) -> None:
        """Register a connection whose hello passed (or raise ConnectionDeclinedError)."""
        ...

    async def dispatch(self, conn: PeerConnection, frame: frames.Frame) -> None:
        """Act on one frame received after the hello."""
        ...

    def detach(self, conn: PeerConnection) -> None:
        """Unregister a connection that ended (called once, even when cancelled)."""
        ...


class PeerConnection:
    """One channel to one peer: its send lock, outbound queue and sender task."""

    def __init__(
        self,
        channel: Channel,
        host: ConnectionHost,
        *,
        dialed_by_us: bool,
        node_id: str,
        cluster_id: str,
        limits: Limits,
        coalesce_s: float,
        stats: SyncStats,
        cert: bytes | None = None,
        source: str | None = None,
        replica: int | None = None,
        assembly_budget: parts.AssemblyBudget | None = None,
    ) -> None:
        self.channel = channel
        # Our store replica id, told in ``about`` frames (version 5; None: not told).
        self._replica = replica
        # The peer's network address (per-source limits), if the transport knows it.
        self.source = source
        self.host = host
        self.dialed_by_us = dialed_by_us
        self._me, self._cluster = node_id, cluster_id
        self._limits = limits
        self._coalesce_s = coalesce_s
        self._stats = stats
        # The peer's certificate (DER) when the transport authenticated it.
        self._cert = cert
        self.node_id: str | None = None
        self.version = 0  # negotiated protocol version
        self.reports_due = False
        self.sent_reports = SentReports()  # each round sends only what grew
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
        # Past the handshake, a turn's first update is pushed in that turn.
        self._streaming = False
        self._turn_push = TurnPush(lambda: self.node_id)
        # Documents this peer created here (limit), and applies not yet committed.
        self.new_docs: set[str] = set()
        self.inflight: collections.deque[asyncio.Future[bool]] = collections.deque()
        self.inflight_bytes = 0  # update bytes of those applies
        self.largest_in = 0  # bytes of the largest frame received (see memory)
        self.assembly = parts.Assembly(
            limits.max_diff_frame_bytes,
            limits.max_frame_bytes,
            limits.max_documents_per_frame,
            assembly_budget,
        )
        # Node ids the peer says it is connected to (see frames.Peers).
        self.neighbors: frozenset[str] = frozenset()
        self.peers_dirty = True
        self.synced = asyncio.Event()
        # Set by the peer's first valid state-vector frame: only then is it a
        # member (its reports count); reports before that are held, bounded.
        self.exchanged = False
        self.held_reports: list[Reports] = []
        self.failed = False
        self._budget = FrameBudget(limits)

    # --- the outbound side -----------------------------------------------------------

    def enqueue(self, doc: str, update: bytes) -> None:
        """Queue one update; on overflow drop the queue and resync instead."""
        if len(self.queue) >= self._limits.peer_queue:
            self.queue.clear()
            self.resync = True
            self._stats.queue_overflows += 1
        else:
            self.queue.append((doc, update))
            eager = self._streaming and not self._coalesce_s
            if eager and self._turn_push.start(self._push_queued):
                return
        self.wake.set()

    def request_sync(self) -> None:
        """Ask the sender to start a state-vector exchange (anti-entropy)."""
        self.sync_requested = True
        self.wake.set()

    def mark_resync(self) -> None:
        """Heal from state vectors: updates meant for this peer were lost."""
        self.resync = True
        self.wake.set()

    def tell(
        self, *, peers: bool = False, reports: bool = False, collected: Iterable[str] = ()
    ) -> None:
        """Have the sender send the peer list, member reports and/or GC records."""
        docs = set(collected)
        self.collected_due |= docs
        self.peers_dirty |= peers
        self.reports_due |= reports
        if peers or reports or docs:
            self.wake.set()

    async def send(self, frame: frames.Frame) -> None:
        """Encode and send one frame (counted in stats and the peer's record)."""
        data = frames.encode(frame)
        async with self.send_lock:
            await self.channel.send(data)
        self._stats.frames_out += 1
        self._stats.bytes_out += len(data)
        if self.record is not None:
            self.record.bytes_out += len(data)

    @property
    def authenticated(self) -> bool:
        """Whether the transport authenticated the peer (mutual TLS)."""
        return self._cert is not None

    async def close(self, code: int, reason: str) -> None:
        """Close the channel with a code and reason."""
        await self.channel.close(code, reason)

    async def send_collected(self, doc: str) -> None:
        """Send ``doc``'s collection record."""
        for frame in self.host.collected_frames(doc):
            await self.send(frame)

    async def send_reports(self) -> None:
        """Send the member reports."""
        for frame in await self.host.report_frames(self.sent_reports):
            await self.send(frame)
            self._stats.reports_out += 1

    async def run_sender(self) -> None:
        """Handshake, then push queued updates; run state-vector exchanges when asked."""
        await self.send_about()
        await self.send(self._peers())
        self.peers_dirty = False
        if self.version >= frames.REPORTS_VERSION:
            # Before any state vector, so each side is the other's member before
            # a diff flows: a peer that syncs, writes offline and vanishes is
            # still one whose writes garbage collection waits for.
            await self.send_reports()
            self.collected_due.update(self.host.collected_docs())
        # One catch-up at a time per node: a node back from a restart gets what it
        # missed from the first peer, and its next peers see it caught up already.
        async with self.host.handshake_lock:
            self.synced.clear()
            await self.send(StateVectors(await self.host.state_vectors(), reply=False))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(HANDSHAKE_WAIT_S):
                    await self.synced.wait()
        # Again, whole, once caught up (it may have dropped some held before).
        self.sent_reports.reset()
        self.reports_due = True
        self.wake.set()
        self._streaming = True
        try:
            await self._stream()
        finally:
            self._streaming = False
            self._turn_push.cancel()

    async def _stream(self) -> None:
        while True:
            await self.wake.wait()
            self.wake.clear()
            if self._coalesce_s:
                await asyncio.sleep(self._coalesce_s)
            if self.peers_dirty:
                self.peers_dirty = False
                await self.send(self._peers())
            if self.reports_due and self.version >= frames.REPORTS_VERSION:
                self.reports_due = False
                await self.send_reports()
            if self.collected_due and self.version >= frames.REPORTS_VERSION:
                due, self.collected_due = self.collected_due, set()
                for doc in sorted(due):
                    await self.send_collected(doc)
            if self.resync or self.sync_requested:
                if self.resync:
                    self._stats.resyncs += 1
                self.resync = self.sync_requested = False
                await self.send_about()
                await self.send(StateVectors(await self.host.state_vectors(), reply=True))
            await self._push_queued()
            if self.record is not None:
                self.record.queued = len(self.queue)

    async def send_about(self) -> None:
        """Tell a version-5 peer our wall clock and replica id (see frames.About)."""
        if self.version >= frames.ABOUT_VERSION and self._replica is not None:
            await self.send(About(time.time(), self._replica))

    def _peers(self) -> Peers:
        # Within what the receiver's decoder takes, whatever our table holds.
        return Peers(tuple(self.host.connected()[: frames.MAX_PEERS]))

    async def _push_queued(self) -> None:
        while self.queue:
            batch = take_push(self.queue, max_update_bytes=self._limits.max_frame_bytes // 2)
            if batch.oversized:
                # One commit too big for a push frame: a state-vector exchange
                # sends it (and everything queued) as diffs, whose limit is larger.
                self.resync = True
                self.wake.set()
            if batch.frame is None:
                break
            await self.send(batch.frame)
            self._stats.updates_pushed += batch.updates
            if self.record is not None:
                self.record.updates_out += batch.updates

    # --- the inbound side ------------------------------------------------------------

    def take_token(self) -> None:
        """Spend one frame of the peer's rate budget (token bucket)."""
        self._budget.take()

    async def receive(self) -> frames.Frame:
        """The next frame: counted, rate limited, decoded within the limits."""
        data = await self.channel.receive()
        self._stats.frames_in += 1
        self._stats.bytes_in += len(data)
        self.largest_in = max(self.largest_in, len(data))
        if self.record is not None:
            self.record.bytes_in += len(data)
        self.take_token()
        limits = self._limits
        check_frame_size(len(data), version=self.version, limits=limits)
        return await parts.decode(
            data, max_bytes=limits.max_frame_bytes, max_docs=limits.max_documents_per_frame
        )

    def check_hello(self, hello: Hello) -> int:
        """The negotiated version, or why the peer is refused."""
        return check_hello(hello, node_id=self._me, cluster_id=self._cluster, cert=self._cert)

    async def fail(self, exc: ProtocolError) -> None:
        """Count, log and close: the one way a peer's bad frame ends its connection."""
        if self.failed:
            return
        self.failed = True
        self._stats.protocol_errors[exc.code] += 1
        log.warning(
            "closing sync connection to %s: %s",
            self.node_id or "peer",
            exc,
            extra={"fields": {"peer": self.node_id}},
        )
        code = (
            CloseCode.TRY_AGAIN_LATER
            if isinstance(exc, AssemblyBusyError)
            else CloseCode.MESSAGE_TOO_BIG
            if isinstance(exc, OversizedFrameError)
            else CloseCode.PROTOCOL_ERROR
        )
        await self.close(code, f"{exc.code}: {exc}")

    # --- the whole connection ----------------------------------------------------------

    async def run(self, record: PeerRecord | None) -> bool:
        """Run the connection to its end; True if the hello exchange succeeded.

        ``record`` is the peer-table entry of the address we dialed (None when
        the peer dialed us). Raises ConnectionDeclinedError (after closing) when
        the connection is not wanted: a duplicate, or ourselves.
        """
        established = False
        try:
            await self.send(Hello(frames.PROTOCOL_VERSIONS, self._me, self._cluster))
            async with asyncio.timeout(HELLO_TIMEOUT_S):
                hello = await self.receive()
            if not isinstance(hello, Hello):
                raise UnexpectedFrameError(f"expected hello, got {type(hello).__name__}")
            self.version = self.check_hello(hello)
            self.node_id, self.origin = hello.node, f"{PEER_ORIGIN}{hello.node}"
            self.host.admit(self, record)
            if self.record is not None and self._cert is not None:
                self.record.cert_not_after = cert_not_after(self._cert)
            established = True
            self.sender = asyncio.get_running_loop().create_task(self.run_sender())
            while True:
                await self.host.dispatch(self, await self.receive())
        except PeerGoneError:
            if self.channel.close_code == CloseCode.TRY_AGAIN_LATER and record is not None:
                # The peer's bounded mesh is full: shown by `edgestate peers`.
                record.last_error = self.channel.close_reason or "mesh_full"
            if self.channel.close_code == CloseCode.POLICY_VIOLATION:
                reason = self.channel.close_reason or "no reason given"
                log.warning(
                    "peer %s refused this node: %s",
                    self.node_id or "?",
                    reason,
                    extra={"fields": {"peer": self.node_id}},
                )
                if record is not None:
                    record.last_error = f"refused by peer: {reason}"
        except PeerRefusedError as exc:
            self._stats.refusal(self.node_id or "peer", str(exc))
            if record is not None:  # a dialed peer: `edgestate peers` and the doctor say why
                record.failures += 1
                record.last_error = f"refused: {exc}"
            await self.close(CloseCode.POLICY_VIOLATION, f"refused: {exc}")
        except ProtocolError as exc:
            await self.fail(exc)
        except TimeoutError:
            self._stats.protocol_errors["hello_timeout"] += 1
            await self.close(CloseCode.PROTOCOL_ERROR, "no hello in time")
        except StoreClosedError:
            await self.close(CloseCode.GOING_AWAY, "node shutting down")
        except ConnectionDeclinedError as exc:
            # Not the peer's fault (a duplicate, ourselves, a full mesh): a normal
            # close, or "try another peer".
            full = isinstance(exc, MeshFullError)
            await self.close(CloseCode.TRY_AGAIN_LATER if full else CloseCode.OK, str(exc))
            raise
        except ConnectionError as exc:
            log.debug(
                "sync connection to %s lost: %s",
                self.node_id,
                exc,
                extra={"fields": {"peer": self.node_id}},
            )
        finally:
            await self._release()
        return established

    async def _release(self) -> None:
        try:
            if self.sender is not None:
                self.sender.cancel()
                await asyncio.wait([self.sender])  # its outcome is of no interest now
            for pending in self.inflight:
                # Already handed to the store's writer: let them land, ignore failures.
                with contextlib.suppress(Exception):
                    await pending
            if not self.channel.closed:
                # While this node shuts down, a peer stopping at the same moment may
                # never answer the close: the frame is sent, waiting on it only
                # delayed every demo stop by CLOSE_WAIT_S.
                wait = SHUTDOWN_CLOSE_WAIT_S if self.host.closing else CLOSE_WAIT_S
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(wait):
                        await self.close(CloseCode.GOING_AWAY, "connection ended")
        finally:
            # Even when cancelled part way (the host app stopping its handlers): a
            # dead connection left registered would refuse the peer's next one as a
            # duplicate, and close() waits on ``closed``.
            try:
                self.host.detach(self)
            finally:
                self.closed.set()
                # Whoever still holds this connection (a log record, a peer
                # table entry) must not hold up to max_diff_frame_bytes with it.
                self.assembly.clear()
                if self.largest_in >= memory.TRIM_AFTER_BYTES:
                    memory.give_back()
