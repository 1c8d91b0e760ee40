"""Gossip of updates: the change pump, frame dispatch, applies, state vectors.

Data flow: every durable commit of the store arrives as a ``ChangeEvent``; its
update bytes are queued to every connected peer except the one it came from
(``origin``) and that peer's own peers (they got it from it: see
``frames.Peers``), so a full mesh carries each update once per link and a chain
still relays. Applying an update that changes nothing produces no event, which
ends any relay loop. Received updates are submitted to the store without
waiting for each commit, so they share group commits.

State vectors are exchanged at connect, at anti-entropy and after a queue
overflow; only then are diffs computed.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import random
import time
from collections.abc import Awaitable, Callable, Iterable

from pycrdt import merge_updates

from edgestate.errors import (
    EdgestateError,
    InvalidUpdateError,
    MalformedFrameError,
    ProtocolError,
    RateLimitedError,
    StalePeerError,
    StaleReplicaError,
    UnexpectedFrameError,
)
from edgestate.store import ChangeEvent, ChangeStream, GcRecord, Ranges, Store
from edgestate.sync import frames, parts
from edgestate.sync.config import SyncConfig
from edgestate.sync.connection import PEER_ORIGIN, PeerConnection
from edgestate.sync.dedup import RecentUpdates, covered_by, digest
from edgestate.sync.diagnosis import keep_vectors
from edgestate.sync.frames import (
    About,
    Collected,
    Diff,
    DiffPart,
    Hello,
    Peers,
    Push,
    Reports,
    StateVectors,
    Synced,
)
from edgestate.sync.membership import Membership, read_state_vectors
from edgestate.sync.peers import PeerTable, lag
from edgestate.sync.stats import SyncStats

# A Yjs v1 update that carries nothing (no structs, empty delete set).
EMPTY_UPDATE = b"\x00\x00"
# Applies submitted to the store ahead of their commit, per connection: enough to
# fill a group commit, few enough to keep back-pressure on the peer's socket.
MAX_INFLIGHT_APPLIES = 64
# ...and at most this many update bytes of them: a peer must not queue gigabytes
# into the writer (two whole 32 MiB frames, or a few parts of a big diff).
MAX_INFLIGHT_BYTES = 64 << 20
# Network sources whose document creations are counted (the least recent is
# dropped beyond): bounded memory whatever the number of addresses.
MAX_SOURCES = 4096


class Gossip:
    """Moves updates between the store and the connected peers."""

    def __init__(
        self,
        store: Store,
        config: SyncConfig,
        *,
        table: PeerTable[PeerConnection],
        membership: Membership,
        stats: SyncStats,
        spawn: Callable[[Awaitable[None]], None],
        closing: Callable[[], bool],
    ) -> None:
        self._store = store
        self._config = config
        self._table = table
        self._membership = membership
        self._stats = stats
        self._spawn = spawn
        self._closing = closing
        # Network source -> documents its peers made us create; least recent first.
        self._created_by_source: collections.OrderedDict[str, set[str]] = collections.OrderedDict()
        # Push updates received lately: duplicate copies are dropped before the
        # writer, and not relayed back to peers that sent them (see dedup).
        self._recent = RecentUpdates()

    async def state_vectors(self) -> dict[str, bytes]:
        """State vectors of every replicated (not local-only) document."""
        out: dict[str, bytes] = {}
        for doc in self._store.documents():
            if doc not in self._config.local_only:
                out[doc] = await self._store.astate_vector(doc)
        return out

    # --- background loops (the daemon starts and stops them) -----------------------------

    async def pump_changes(self, stream: ChangeStream) -> None:
        """Queue every committed update to the peers that lack it; ``stream`` is
        filtered by :meth:`relays` (``store.changes(keep=gossip.relays)``)."""
        conns = self._table.conns
        while True:
            event = await stream.get()
            if event is None:
                return
            if stream.reset_overflow():
                # Events were dropped before we saw them: heal from state vectors.
                for conn in conns.values():
                    conn.mark_resync()
            # The peer an update came from, and that peer's own peers, have it.
            came_from = (
                conns.get(event.origin.removeprefix(PEER_ORIGIN))
                if event.origin and event.origin.startswith(PEER_ORIGIN)
                else None
            )
            covered = came_from.neighbors if came_from is not None else frozenset()
            if came_from is not None:
                covered = covered | self._also_covered(event.doc, event.update, conns)
            for conn in conns.values():
                if conn.origin != event.origin and conn.node_id not in covered:
                    conn.enqueue(event.doc, event.update)

    def relays(self, event: ChangeEvent) -> bool:
        """Whether ``pump_changes`` relays ``event``: the filter of its stream, on the
        writer thread, so an event it would drop does not wake the loop (a Yjs
        client's update, which went to every peer at submission, one per commit)."""
        if event.doc in self._config.local_only:
            return False
        # An announced local update went to every peer when it was submitted
        # (relay_submitted); a peer's is relayed on from here.
        return not event.announced or (event.origin or "").startswith(PEER_ORIGIN)

    def relay_submitted(self, doc: str, update: bytes, origin: str) -> None:
        """On the loop, as the store announces a submitted update
        (:mod:`edgestate.store.announce`): one of a local source (a Yjs client) goes
        to every peer now, not after the writer's hop and the pump's; a peer's is
        relayed on from its event as before (the writer's "changed nothing" is
        what ends a relay loop)."""
        if origin.startswith(PEER_ORIGIN) or doc in self._config.local_only or self._closing():
            return
        for conn in self._table.conns.values():
            conn.enqueue(doc, update)

    def _also_covered(
        self, doc: str, update: bytes, conns: dict[str, PeerConnection]
    ) -> frozenset[str]:
        """Peers whose copy of an update came in meanwhile, and their peers (see
        ``dedup.covered_by``)."""

        def neighbors(node_id: str) -> frozenset[str]:
            conn = conns.get(node_id)
            return conn.neighbors if conn is not None else frozenset()

        return covered_by(self._recent.holders(digest(doc, update)), neighbors)

    async def anti_entropy(self) -> None:
        """Now and then, a state-vector exchange with one linked peer: the one
        exchanged with longest ago, so every link takes its turn (with a bounded
        mesh, a relay one link missed heals within links * anti_entropy_s)."""
        period = self._config.anti_entropy_s
        while True:
            await asyncio.sleep(random.uniform(period / 2, period * 1.5))
            due = next_anti_entropy(self._table.connections())
            if due is not None:
                due.request_sync()
            self._table.forget_departed(self._config.forget_after_s)

    def anti_entropy_now(self) -> None:
        """Ask every connected peer for a state-vector exchange right away."""
        for conn in self._table.connections():
            conn.request_sync()

    # --- frames from a peer ------------------------------------------------------------------

    async def dispatch(self, conn: PeerConnection, frame: frames.Frame) -> None:
        """Act on one frame; bad data inside it is the peer's protocol error."""
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

    async def _dispatch_frame(self, conn: PeerConnection, frame: frames.Frame) -> None:
        match frame:
            case Push(updates):
                recent = self._recent
                by_doc: dict[str, list[tuple[bytes, bytes | None]]] = {}
                for doc, update in updates:
                    key = digest(doc, update)
                    if recent.duplicate(key, conn.node_id):
                        self._stats.duplicates_dropped += 1  # a copy: see dedup
                    else:
                        by_doc.setdefault(doc, []).append((update, key))
                for doc, ups in by_doc.items():
                    merged = ups[0][0] if len(ups) == 1 else merge_updates(*(u for u, _ in ups))
                    await self._apply(conn, doc, merged)
                    for _, key in ups:
                        recent.remember(key, conn.node_id)
            case Diff(doc, update, collected):
                if collected is not None and conn.version < frames.RECORD_IN_DIFF_VERSION:
                    raise UnexpectedFrameError(
                        f"diff carrying a collection record in protocol version {conn.version}"
                    )
                await self._apply(conn, doc, update, record_of(collected))
            case DiffPart():
                if conn.version < frames.PARTS_VERSION:
                    raise UnexpectedFrameError(
                        f"diff_part frame in protocol version {conn.version}"
                    )
                whole = await conn.assembly.add(frame)
                if whole is not None:
                    await self._dispatch_frame(conn, whole)
            case StateVectors(docs, reply):
                vectors = await _read_vectors(docs)
                if not conn.exchanged:
                    # A valid state exchange: from now on the peer is a member,
                    # before any diff of ours reaches it.
                    conn.exchanged = True
                    held, conn.held_reports = conn.held_reports, []
                    for report in held:
                        await self._receive_reports(conn, report)
                if conn.version < frames.REPORTS_VERSION and conn.node_id is not None:
                    await self._membership.report_for_legacy(conn.node_id, vectors)
                await self._drain_applies(conn)
                await self._answer_state_vectors(conn, docs, vectors, reply)
            case Synced():
                if conn.assembly.open:
                    raise UnexpectedFrameError("synced while a diff in parts is incomplete")
                await self._drain_applies(conn)
                conn.synced.set()
            case Peers(nodes):
                conn.neighbors = frozenset(nodes)
            case Collected(doc, ranges, rehung, floor):
                if conn.version < frames.REPORTS_VERSION:
                    raise UnexpectedFrameError(
                        f"collected frame in protocol version {conn.version}"
                    )
                if doc not in self._config.local_only:
                    await self._drain_applies(conn)  # the diff it follows lands first
                    await self._membership.receive_collected(doc, ranges, rehung, floor)
            case Reports():
                if conn.version < frames.REPORTS_VERSION:
                    raise UnexpectedFrameError(f"reports frame in protocol version {conn.version}")
                if conn.exchanged:
                    await self._receive_reports(conn, frame)
                elif (
                    sum(_report_size(r) for r in conn.held_reports) + _report_size(frame)
                    <= MAX_HELD_REPORT_NUMBERS
                ):
                    conn.held_reports.append(frame)
                # else dropped: reports are sent again once caught up and every round
            case About(now, replica):
                if conn.version < frames.ABOUT_VERSION:
                    raise UnexpectedFrameError(f"about frame in protocol version {conn.version}")
                if conn.record is not None:
                    conn.record.clock_offset_s = now - time.time()
                    conn.record.replica = replica
            case Hello():
                raise UnexpectedFrameError("second hello on one connection")

    async def _receive_reports(self, conn: PeerConnection, frame: Reports) -> None:
        conn.sent_reports.heard(frame.members)
        await self._membership.receive_reports(
            frame.members, frame.forgotten, conn.node_id, authenticated=conn.authenticated
        )

    async def _apply(
        self, conn: PeerConnection, doc: str, update: bytes, record: GcRecord | None = None
    ) -> None:
        if doc in self._config.local_only:
            # A peer configured differently; its copy stays with it.
            return
        if update == EMPTY_UPDATE and record is None:
            return
        if conn.record is not None:
            conn.record.updates_in += 1
        # Counted per peer, not per connection, so reconnecting does not reset it
        # (found in review).
        created = conn.record.new_docs if conn.record is not None else conn.new_docs
        limit = self._config.limits.max_new_documents
        if doc not in created and not self._store.has_document(doc):
            created.add(doc)
            if len(created) > limit:
                raise RateLimitedError(f"peer created over {limit} documents")
            # And per network source: in insecure mode a new node id per
            # connection reset the count above (found in hardening: 16,002
            # documents in 62 s from one address).
            if conn.source is not None:
                by_source = self._created_by_source.pop(conn.source, set())
                self._created_by_source[conn.source] = by_source  # most recent last
                by_source.add(doc)
                while len(self._created_by_source) > MAX_SOURCES:
                    self._created_by_source.popitem(last=False)
                if len(by_source) > limit:
                    raise RateLimitedError(f"peers at {conn.source} created over {limit} documents")
        # Submitted without waiting for the commit: the store's writer keeps
        # submission order and folds queued applies into one group commit. Queued
        # now, not from a task's first step: a loop turn less per relay hop
        # (docs/mesh.md, where a write's time goes).
        try:
            pending = self._store.submit_update(
                doc, update, origin=conn.origin, create=True, record=record
            )
        except EdgestateError as exc:  # the store is closing: as the future would fail
            pending = asyncio.get_running_loop().create_future()
            pending.set_exception(exc)
        # A bad update must end the connection now, not when the next frame comes.
        pending.add_done_callback(functools.partial(self._apply_done, conn, doc))
        pending.add_done_callback(functools.partial(_uncount, conn, len(update)))
        conn.inflight.append(pending)
        conn.inflight_bytes += len(update)
        while conn.inflight and (
            conn.inflight[0].done()
            or len(conn.inflight) > MAX_INFLIGHT_APPLIES
            or conn.inflight_bytes > MAX_INFLIGHT_BYTES
        ):
            await _settle(conn.inflight.popleft(), doc)

    def _apply_done(self, conn: PeerConnection, doc: str, pending: asyncio.Future[bool]) -> None:
        if pending.cancelled():
            return
        exc = pending.exception()
        if isinstance(exc, InvalidUpdateError) and not self._closing():
            self._spawn(conn.fail(_update_error(doc, exc)))

    async def _drain_applies(self, conn: PeerConnection) -> None:
        while conn.inflight:
            await _settle(conn.inflight.popleft(), "a document")

    async def _answer_state_vectors(
        self,
        conn: PeerConnection,
        theirs: dict[str, bytes],
        vectors: dict[str, dict[int, int]],
        reply: bool,
    ) -> None:
        ours = await self.state_vectors()
        lags: dict[str, int] = {}
        for doc, sv in ours.items():
            remote = theirs.get(doc)
            if remote is not None:
                lags[doc] = lag(sv, vectors[doc])
            # Equal state vectors can still hide a delete the other side lacks
            # (deletes do not advance clocks), so the diff is always computed; it
            # is then just the delete set.
            record: GcRecord | None = None
            if conn.version >= frames.RECORD_IN_DIFF_VERSION:
                update, record = await self._store.adiff_with_record(doc, remote)
            else:
                update = await self._store.adiff(doc, remote)
            if update != EMPTY_UPDATE or remote is None:
                # The record rides in the diff it describes (see frames.Diff).
                inline = collected_of(doc, record)
                diff = Diff(doc, update, inline)
                if conn.version >= frames.PARTS_VERSION:
                    for frame in parts.split(diff, self._config.limits.max_frame_bytes):
                        await conn.send(frame)
                else:  # an older peer's limit is its own business
                    await conn.send(diff)
                self._stats.diffs_sent += 1
                if conn.version >= frames.REPORTS_VERSION and inline is None:
                    # Right behind the history it describes (see frames.Collected).
                    await conn.send_collected(doc)
        await conn.send(Synced())
        if conn.record is not None:
            conn.record.lag_by_doc = lags
            conn.record.last_sync = time.time()
            conn.record.vectors, conn.record.vectors_dropped = keep_vectors(vectors)
        if reply:
            # The clock reading rides with every exchange a peer asks for, so a
            # doctor's refresh (SyncDaemon.refresh_peer_vectors) gets a fresh one.
            await conn.send_about()
            await conn.send(StateVectors(ours, reply=False))


def next_anti_entropy(conns: Iterable[PeerConnection]) -> PeerConnection | None:
    """The connection whose peer we exchanged state vectors with longest ago."""

    def last(conn: PeerConnection) -> tuple[float, str]:
        synced = conn.record.last_sync if conn.record is not None else None
        return (synced or 0.0, conn.node_id or "")

    return min(conns, key=last, default=None)


def collected_of(doc: str, record: GcRecord | None) -> Collected | None:
    """``record`` as a diff's ``collected``, or None if it would exceed one collected
    frame's decoder limits (it then follows the diff as collected frames)."""
    if record is None:
        return None
    ranges, rehung = record.ranges.to_wire(), record.rehung.to_wire()
    for runs in (ranges, rehung):
        if (
            len(runs) > frames.MAX_SV_CLIENTS
            or sum(len(r) for r in runs.values()) > frames.MAX_RUN_NUMBERS
        ):
            return None
    if len(record.floor) > frames.MAX_SV_CLIENTS:
        return None
    return Collected(doc, ranges, rehung, dict(record.floor))


def record_of(collected: Collected | None) -> GcRecord | None:
    """The store's form of a diff's ``collected``."""
    if collected is None:
        return None
    return GcRecord(
        Ranges.from_wire(collected.ranges).normalize(),
        Ranges.from_wire(collected.rehung).normalize(),
        dict(collected.floor),
    )


# Report numbers (see membership.chunk_reports) held per connection until its
# state exchange: a few frames' worth; an honest peer sends them before its svs.
MAX_HELD_REPORT_NUMBERS = 4 << 20
# State vectors of more bytes than this are decoded off the event loop: a
# million-client vector is ~2 s of Python (found in hardening: /healthz stalled).
DECODE_OFF_LOOP_BYTES = 64 << 10


def _report_size(frame: Reports) -> int:
    return sum(2 * len(v) + 8 for docs in frame.members.values() for v in docs.values())


async def _read_vectors(docs: dict[str, bytes]) -> dict[str, dict[int, int]]:
    if sum(len(sv) for sv in docs.values()) > DECODE_OFF_LOOP_BYTES:
        return await asyncio.to_thread(read_state_vectors, docs)
    return read_state_vectors(docs)


def _uncount(conn: PeerConnection, size: int, _: asyncio.Future[bool]) -> None:
    conn.inflight_bytes -= size


async def _settle(pending: asyncio.Future[bool], doc: str) -> None:
    try:
        await pending
    except InvalidUpdateError as exc:
        raise _update_error(doc, exc) from exc


def _update_error(doc: str, exc: InvalidUpdateError) -> ProtocolError:
    if isinstance(exc, StaleReplicaError):
        return StalePeerError(str(exc))
    return MalformedFrameError(f"invalid update for {doc}: {exc}")
