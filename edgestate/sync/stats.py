"""Counters of one sync daemon, shared by its parts (connections, gossip, dialer)."""

from __future__ import annotations

import collections
import logging
from dataclasses import dataclass, field

log = logging.getLogger(__name__)


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
    # Push copies of an update already received, dropped before the store (dedup).
    duplicates_dropped: int = 0
    # Reports frames sent: only when a member's report grew (report_delta).
    reports_out: int = 0
    refused: int = 0
    # Diffs in parts that waited for room in the node-wide assembly budget.
    assembly_waits: int = 0
    protocol_errors: collections.Counter[str] = field(default_factory=collections.Counter)

    def refusal(self, who: object, reason: str) -> None:
        """Count and log one refused connection."""
        self.refused += 1
        log.warning(
            "refused sync connection from %s: %s", who, reason, extra={"fields": {"peer": who}}
        )
