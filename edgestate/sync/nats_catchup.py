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

At start, and again after each reconnect (a site cut off for a while comes
back without restarting: ``Inbound.reconnected``).

If the node does not answer in full, nothing is skipped: the replay runs.
Ack floors come from the NATS server, trusted like the stream itself; the diff
is sealed and checked like any message.
"""

from __future__ import annotations

import asyncio
import logging

import nats.errors
import nats.js.errors
from nats.js.api import ConsumerInfo

from edgestate.errors import NatsLinkError
from edgestate.sync.nats_entropy import AntiEntropy
from edgestate.sync.nats_host import LinkHost, raise_if_cancelled
from edgestate.sync.nats_inbound import API_SETTLE_S, Inbound
from edgestate.sync.nats_subjects import durable_name

log = logging.getLogger(__name__)

# Behind by more messages than this, a node catches up by diff (one message of
# overhead per document instead of one per update).
CATCHUP_BY_DIFF_MESSAGES = 256
# How often the JetStream API is asked again while it does not answer (a server
# just restarted), for up to nats_inbound.API_SETTLE_S before replaying instead.
API_RETRY_S = 0.5


async def start_sequence(link: LinkHost, inbound: Inbound, entropy: AntiEntropy) -> int | None:
    """The stream sequence this node's consumer may restart at, having caught up
    by diff; None to resume where it left off.

    Right after a reconnect the server's JetStream may still be recovering (a
    restarted server catching up its stream replicas): its API is asked again
    for up to ``API_SETTLE_S`` before the node settles for the replay."""
    deadline = asyncio.get_running_loop().time() + API_SETTLE_S
    while True:
        try:
            return await _catch_up(link, inbound, entropy)
        except (nats.errors.Error, NatsLinkError, OSError) as exc:
            raise_if_cancelled()
            if asyncio.get_running_loop().time() > deadline:
                log.info("catch-up by diff not possible (replaying the stream): %s", exc)
                return None
            await asyncio.sleep(API_RETRY_S)


async def _catch_up(link: LinkHost, inbound: Inbound, entropy: AntiEntropy) -> int | None:
    _, js = link.client
    stream = link.subjects.stream
    try:
        floor = _floor(await js.consumer_info(stream, inbound.durable))
    except nats.js.errors.NotFoundError:
        # Gone (or never made): where this node's own applies reached, so a
        # consumer lost under a running link is not taken for a node far behind.
        floor = link.stats.acked_seq
    # How far behind is measured against the other nodes' ack floors, not our
    # consumer's num_pending: a server just restarted answers that from its own
    # replica, which may not have caught up yet (it said 0, 700 messages behind).
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
    if not any(durable_name(sender) == best.name for sender in answered):
        log.info("%s did not answer in full: replaying the stream", best.name)
        return None
    link.stats.catchups_by_diff += 1
    # Applied up to there by the diff: what the status reports as our ack floor.
    link.stats.acked_seq = max(link.stats.acked_seq, ahead)
    log.info(
        "caught up by diff from %s; skipping stream messages %d..%d", best.name, floor + 1, ahead
    )
    return ahead + 1


def _floor(consumer: ConsumerInfo) -> int:
    """The highest stream sequence up to which ``consumer`` acked every message."""
    return int(consumer.ack_floor.stream_seq) if consumer.ack_floor else 0
