"""The peer table: who we know, how we reach them, how far behind they are.

Everything here is owned by the daemon's event loop; ``PeerStatus`` is the
immutable snapshot handed to the API and CLI.
"""

from __future__ import annotations

import enum
import random
import time
from dataclasses import dataclass, field

from pycrdt import Decoder


class PeerState(enum.Enum):
    """Connection state of one known peer."""

    DISCOVERED = "discovered"  # known address, not dialed yet
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


def decode_state_vector(sv: bytes) -> dict[int, int]:
    """Client id -> clock of a Yjs v1 state vector (for lag, never for merging)."""
    decoder = Decoder(sv)
    count = decoder.read_var_uint()
    out: dict[int, int] = {}
    for _ in range(count):
        client = decoder.read_var_uint()
        out[client] = decoder.read_var_uint()
    return out


def lag(ours: bytes, theirs: bytes) -> int:
    """How many clock units ``theirs`` trails ``ours``, summed over clients."""
    try:
        mine, other = decode_state_vector(ours), decode_state_vector(theirs)
    except (IndexError, RuntimeError):
        return 0  # a malformed vector shows no lag; the apply path reports it
    return sum(max(0, clock - other.get(client, 0)) for client, clock in mine.items())
