"""The peer table: who we know, how we reach them, how far behind they are.

Everything here is owned by the daemon's event loop; ``PeerStatus`` is the
immutable snapshot handed to the API and CLI. ``PeerTable`` holds one record
per peer (keyed by address when dialable, ``inbound:<node id>`` otherwise) and
at most one registered connection per node id: of two connections between the
same pair, both sides keep the one dialed by the smaller node id.
"""

from __future__ import annotations

import asyncio
import enum
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from edgestate.errors import ConnectionDeclinedError
from edgestate.store import decode_state_vector
from edgestate.sync.channel import CloseCode
from edgestate.sync.discovery import Found


class PeerState(enum.Enum):
    """Connection state of one known peer."""

    DISCOVERED = "discovered"  # known address, not dialed yet
    STANDBY = "standby"  # known address the bounded mesh does not link to now
    CONNECTING = "connecting"
    CONNECTED = "connected"
    BACKOFF = "backoff"  # last attempt failed; waiting to retry
    DISCONNECTED = "disconnected"  # inbound peer that went away


@dataclass(frozen=True, slots=True)
class PeerStatus:
    """A snapshot of one peer, for ``SyncDaemon.peers()``."""

    node_id: str | None
    address: str | None
    source: str  # "static", "mdns" or "inbound"
    state: PeerState
    connected_since: float | None  # wall-clock seconds
    last_sync: float | None  # wall clock of the last state-vector exchange
    # Sum over documents of how many operations (Yjs clock units) their state
    # vector trails ours, as of the last state-vector exchange, plus queued pushes.
    lag: int
    queued: int
    failures: int
    last_error: str | None
    # Traffic with this peer since this node started (all its connections).
    bytes_in: int = 0
    bytes_out: int = 0
    updates_in: int = 0
    updates_out: int = 0


@dataclass(slots=True)
class PeerRecord:
    """Mutable record of one peer, keyed by address (dialable) or node id (inbound)."""

    address: str | None
    source: str
    node_id: str | None = None
    state: PeerState = PeerState.DISCOVERED
    connected_since: float | None = None
    last_sync: float | None = None
    lag_by_doc: dict[str, int] = field(default_factory=dict)
    queued: int = 0
    failures: int = 0
    last_error: str | None = None
    last_seen: float = field(default_factory=time.monotonic)
    bytes_in: int = 0
    bytes_out: int = 0
    updates_in: int = 0
    updates_out: int = 0
    # Documents this peer made us create (limits.max_new_documents).
    new_docs: set[str] = field(default_factory=set)
    # For the doctor (sync/diagnosis.py): the peer's state vectors as of its last
    # state-vector exchange (bounded), and its certificate's notAfter.
    vectors: dict[str, dict[int, int]] = field(default_factory=dict)
    vectors_dropped: int = 0
    cert_not_after: float | None = None
    # From its last ``about`` frame (version 5): its clock minus ours, as received
    # (so plus the one-way transit time), and its store replica id.
    clock_offset_s: float | None = None
    replica: int | None = None

    def snapshot(self) -> PeerStatus:
        """Freeze this record for callers outside the loop."""
        return PeerStatus(
            node_id=self.node_id,
            address=self.address,
            source=self.source,
            state=self.state,
            connected_since=self.connected_since,
            last_sync=self.last_sync,
            lag=sum(self.lag_by_doc.values()) + self.queued,
            queued=self.queued,
            failures=self.failures,
            last_error=self.last_error,
            bytes_in=self.bytes_in,
            bytes_out=self.bytes_out,
            updates_in=self.updates_in,
            updates_out=self.updates_out,
        )


class Backoff:
    """Exponential backoff with full jitter (retries of many nodes do not align)."""

    def __init__(self, initial_s: float, max_s: float) -> None:
        self._initial = initial_s
        self._max = max_s
        self._attempt = 0

    def next_delay(self) -> float:
        """Delay before the next attempt; grows with each call until ``reset``."""
        ceiling = min(self._max, self._initial * (2**self._attempt))
        self._attempt = min(self._attempt + 1, 32)
        return random.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        """Call after a success: the next failure starts from the initial delay."""
        self._attempt = 0


def lag(ours: bytes, theirs: bytes | Mapping[int, int]) -> int:
    """How many clock units ``theirs`` (a vector, or decoded) trails ``ours``."""
    try:
        mine = decode_state_vector(ours)
        other = decode_state_vector(theirs) if isinstance(theirs, bytes) else theirs
    except (IndexError, RuntimeError, ValueError):
        return 0  # a malformed vector shows no lag; the apply path reports it
    return sum(max(0, clock - other.get(client, 0)) for client, clock in mine.items())


class Member(Protocol):
    """What the table needs of a connection (``PeerConnection`` is one)."""

    node_id: str | None
    dialed_by_us: bool
    record: PeerRecord | None

    def tell(
        self, *, peers: bool = False, reports: bool = False, collected: Iterable[str] = ()
    ) -> None:
        """Have the sender tell the peer what changed."""
        ...

    def close(self, code: int, reason: str) -> Awaitable[None]:
        """Close the connection."""
        ...


C = TypeVar("C", bound=Member)


class PeerTable(Generic[C]):
    """Known peers and the registered connection of each connected one."""

    def __init__(self, me: str, spawn: Callable[[Awaitable[None]], None]) -> None:
        self._me = me
        self._spawn = spawn
        self.conns: dict[str, C] = {}
        self.records: dict[str, PeerRecord] = {}
        # Pulsed (set, then replaced) on every change of ``conns``.
        self._changed = asyncio.Event()

    def connected(self) -> list[str]:
        """Node ids of the peers connected right now."""
        return list(self.conns)

    def connections(self) -> Iterable[C]:
        """The registered connections (a copy: safe to iterate across awaits)."""
        return list(self.conns.values())

    async def wait_connected(self, count: int) -> None:
        """Return once at least ``count`` peers are connected."""
        while len(self.conns) < count:
            await self._changed.wait()

    async def wait_changed(self) -> None:
        """Return at the next change of the registered connections."""
        await self._changed.wait()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def found(self, found: Found) -> PeerRecord:
        """The record of a discovered address (created, or adopted from inbound)."""
        address = f"{found.host}:{found.port}"
        record = self.records.get(address)
        if record is None:
            # A peer that dialed us first becomes dialable: one record per peer.
            record = self.records.pop(f"inbound:{found.node_id}", None)
            if record is None:
                record = PeerRecord(address=address, source=found.source, node_id=found.node_id)
            record.address, record.source = address, found.source
            self.records[address] = record
        record.last_seen = time.monotonic()
        return record

    def admit(self, conn: C, record: PeerRecord | None) -> None:
        """Register ``conn``; of two connections between the same pair keep one."""
        assert conn.node_id is not None
        existing = self.conns.get(conn.node_id)
        if existing is not None:
            # Both sides keep the connection dialed by the smaller node id, so
            # simultaneous dials settle on the same one without a round trip.
            keep_new = conn.dialed_by_us == (self._me < conn.node_id)
            if not keep_new:
                if record is not None:
                    self._adopt(existing, record)
                raise ConnectionDeclinedError("duplicate connection")
            existing.node_id = None  # its release must not unregister the new one
            self._spawn(existing.close(CloseCode.OK, "duplicate connection"))
        if record is None:
            record = next(
                (r for r in self.records.values() if r.node_id == conn.node_id), None
            ) or self.records.setdefault(
                f"inbound:{conn.node_id}", PeerRecord(address=None, source="inbound")
            )
        self._adopt(conn, record)
        self.conns[conn.node_id] = conn
        self._peers_changed()
        self._notify()

    def _adopt(self, conn: C, record: PeerRecord) -> None:
        """Make ``record`` the one table entry of ``conn``'s peer (dialable beats inbound)."""
        assert conn.node_id is not None
        inbound = self.records.get(f"inbound:{conn.node_id}")
        if inbound is not None and inbound is not record and record.address is not None:
            del self.records[f"inbound:{conn.node_id}"]
            record.last_sync = record.last_sync or inbound.last_sync
            record.lag_by_doc = record.lag_by_doc or inbound.lag_by_doc
        record.node_id = conn.node_id
        record.state = PeerState.CONNECTED
        record.connected_since = record.connected_since or time.time()
        record.last_seen = time.monotonic()
        conn.record = record

    def detach(self, conn: C) -> None:
        """Unregister ``conn`` if it is its peer's registered connection."""
        if conn.node_id is None or self.conns.get(conn.node_id) is not conn:
            return
        del self.conns[conn.node_id]
        self._peers_changed()
        if conn.record is not None:
            conn.record.state = PeerState.BACKOFF if conn.record.address else PeerState.DISCONNECTED
            conn.record.connected_since = None
            conn.record.last_seen = time.monotonic()
        self._notify()

    def _peers_changed(self) -> None:
        for other in self.conns.values():
            other.tell(peers=True)

    def forget_departed(self, forget_after_s: float) -> None:
        """Drop peers that only ever dialed us and have been gone a while."""
        cutoff = time.monotonic() - forget_after_s
        for key, record in list(self.records.items()):
            if record.address is None and record.state is PeerState.DISCONNECTED:
                if record.last_seen < cutoff:
                    del self.records[key]
