"""Counters and status of the NATS link (CLI ``edgestate cluster nats``, metrics)."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any

log = logging.getLogger(__name__)

# Refused senders remembered for logging once each; beyond, they are only counted.
MAX_REFUSED_SENDERS = 1024


@dataclass(slots=True)
class NatsStats:
    """What the link did since start (counters only grow)."""

    connected: bool = False
    server: str | None = None
    servers: list[str] = field(default_factory=list)
    last_error: str | None = None
    # The edgestate.errors code of a link failure (nats_tls, nats_auth, nats_link).
    last_error_code: str | None = None
    reconnects: int = 0
    messages_in: int = 0
    messages_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    updates_published: int = 0
    updates_applied: int = 0
    # Updates dropped from the publish queue while the link was down (they reach
    # the other sites through anti-entropy instead).
    updates_dropped: int = 0
    pending_bytes: int = 0
    refused: int = 0
    malformed: int = 0
    anti_entropy_rounds: int = 0
    # Targeted anti-entropy requests sent again: no responder yet, or nothing back
    # (core NATS delivers at most once; see nats_entropy.REASK_S).
    anti_entropy_reasks: int = 0
    # Member reports messages published: only what grew since the last round.
    reports_out: int = 0
    # Restarts that caught up by one node's diff instead of replaying the stream.
    catchups_by_diff: int = 0
    # Times the consumer found stream messages dropped (retention) before it
    # applied them, while connected; each asked for an anti-entropy round.
    stream_gaps: int = 0
    # Times this node's consumer was found gone under the link and made again.
    consumers_lost: int = 0
    anti_entropy_bytes_in: int = 0
    # The stream's last sequence and our consumer's ack floor when last seen.
    stream_last_seq: int = 0
    acked_seq: int = 0
    consumer_pending: int = 0
    # Document -> the stream sequence of its last message applied here.
    acked_by_doc: dict[str, int] = field(default_factory=dict)
    refused_senders: dict[str, str] = field(default_factory=dict)

    def refusal(self, sender: str, reason: str) -> None:
        """Count one dropped message of a non-member; log once per sender."""
        self.refused += 1
        if sender not in self.refused_senders and len(self.refused_senders) < MAX_REFUSED_SENDERS:
            self.refused_senders[sender] = reason
            log.warning("dropping NATS messages of %s: %s", sender[:16], reason)

    def snapshot(self) -> dict[str, Any]:
        """A JSON-ready copy."""
        out = asdict(self)
        out["refused_senders"] = {k[:16]: v for k, v in self.refused_senders.items()}
        return out
