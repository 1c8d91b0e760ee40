"""Catch-up by diff: a node far behind the stream skips the replay.

Replaying the log costs each message's overhead again (~250 bytes: envelope,
subject, ack subject), so a node back after a long absence of trickling writes
would receive several times the bytes it missed. Instead, when its consumer is
more than ``CATCHUP_BY_DIFF_MESSAGES`` behind, it

1. asks the server for the other nodes' durable consumers and picks the one with
   the highest ack floor F: that node applied every message up to F (a message
   is acked only after its apply committed);
2. asks that node alone for the diff of what it lacks (anti-entropy, direct
   subject) and applies it;
3. starts its consumer again at F + 1: what that node had not applied yet is
   replayed as usual.

If the node does not answer in full, nothing is skipped: the replay runs.
Ack floors come from the NATS server, trusted like the stream itself; the diff
is sealed and checked like any message.
"""

from __future__ import annotations

import logging

import nats.errors
import nats.js.errors
from nats.js.api import ConsumerInfo

from edgestate.errors import NatsLinkError
from edgestate.sync.nats_entropy import AntiEntropy
from edgestate.sync.nats_host import LinkHost, raise_if_cancelled
from edgestate.sync.nats_inbound import Inbound
from edgestate.sync.nats_subjects import durable_name

log = logging.getLogger(__name__)

# Behind by more messages than this, a node catches up by diff (one message of
# overhead per document instead of one per update).
CATCHUP_BY_DIFF_MESSAGES = 256


async def start_sequence(link: LinkHost, inbound: Inbound, entropy: AntiEntropy) -> int | None:
    """The stream sequence this node's consumer may restart at, having caught up
    by diff; None to resume where it left off."""
    _, js = link.client
    stream = link.subjects.stream
    try:
        try:
            mine = await js.consumer_info(stream, inbound.durable)
            floor = _floor(mine)
            behind = int(mine.num_pending or 0) + int(mine.num_ack_pending or 0)
        except nats.js.errors.NotFoundError:
            floor, behind = 0, int((await js.stream_info(stream)).state.messages)
        if behind <= CATCHUP_BY_DIFF_MESSAGES:
            return None
        others = [
            c
            for c in await js.consumers_info(stream)
            if c.name != inbound.durable and c.name.startswith("node_") and c.ack_floor
        ]
        if not others:
            return None
        best = max(others, key=_floor)
        ahead = _floor(best)
        if ahead <= floor + CATCHUP_BY_DIFF_MESSAGES:
            return None
        answered = await entropy.round(target=best.name)
    except (nats.errors.Error, NatsLinkError, OSError) as exc:
        raise_if_cancelled()
        log.info("catch-up by diff not possible (replaying the stream): %s", exc)
        return None
    if not any(durable_name(sender) == best.name for sender in answered):
        log.info("%s did not answer in full: replaying the stream", best.name)
        return None
    link.stats.catchups_by_diff += 1
    log.info(
        "caught up by diff from %s; skipping stream messages %d..%d", best.name, floor + 1, ahead
    )
    return ahead + 1


def _floor(consumer: ConsumerInfo) -> int:
    """The highest stream sequence up to which ``consumer`` acked every message."""
    return int(consumer.ack_floor.stream_seq) if consumer.ack_floor else 0
