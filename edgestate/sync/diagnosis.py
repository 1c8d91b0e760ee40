"""What the sync layer knows of each peer, for a health check (``edgestate doctor``).

The peer table keeps, per peer, the state vectors it sent in its last
state-vector exchange (:func:`keep_vectors` bounds them) and the expiry of the
certificate it presented; :class:`PeerView` freezes that with the connection
state for callers outside the loop. :func:`missing` compares two vectors: what
one replica holds of each client (CRDT replica) that the other lacks.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

# Most (client, clock) entries kept per peer from its last state-vector exchange:
# every document of a small cluster many times over, while a peer with a
# million-client vector cannot make the table hold megabytes per peer. Documents
# beyond the bound are left out (the doctor says it could not compare them).
MAX_KEPT_ENTRIES = 65536


@dataclass(frozen=True, slots=True)
class PeerView:
    """One peer as the doctor sees it (a snapshot; wall-clock seconds)."""

    node_id: str | None
    address: str | None
    source: str
    state: str
    connected: bool
    # Seconds since the peer was last connected or dialed (monotonic, so immune to
    # clock steps).
    seen_ago_s: float
    last_sync: float | None
    failures: int
    last_error: str | None
    # notAfter of the certificate the peer presented in the TLS handshake (None in
    # insecure mode or if it never connected).
    cert_not_after: float | None
    # Its clock minus ours plus the one-way transit time, from its last ``about``
    # frame (None: a peer older than sync version 5), and its store replica id.
    clock_offset_s: float | None
    replica: int | None
    # Document -> its state vector as of the peer's last state-vector exchange.
    vectors: dict[str, dict[int, int]]
    # Documents the peer listed whose vectors were not kept (over MAX_KEPT_ENTRIES).
    vectors_dropped: int


def keep_vectors(vectors: Mapping[str, Mapping[int, int]]) -> tuple[dict[str, dict[int, int]], int]:
    """Copies of ``vectors`` up to MAX_KEPT_ENTRIES entries, and how many documents
    were left out."""
    kept: dict[str, dict[int, int]] = {}
    entries = dropped = 0
    for doc in sorted(vectors):
        vector = vectors[doc]
        if entries + len(vector) > MAX_KEPT_ENTRIES:
            dropped += 1
            continue
        entries += len(vector)
        kept[doc] = dict(vector)
    return kept, dropped


def missing(have: Mapping[int, int], other: Mapping[int, int]) -> dict[int, int]:
    """Client -> how many updates (clock units) ``other`` lacks of what ``have`` holds."""
    return {c: k - other.get(c, 0) for c, k in have.items() if k > other.get(c, 0)}


def seen_ago(last_seen_monotonic: float) -> float:
    """Seconds since a monotonic timestamp."""
    return max(0.0, time.monotonic() - last_seen_monotonic)
