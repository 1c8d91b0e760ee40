"""This node's durable pull consumer: created where asked, checked, then bound.

Not ``js.pull_subscribe(durable=...)``, which looks the consumer up first and
binds to whatever it finds. Right after a delete (to restart the consumer at a
later sequence, ``nats_catchup``) a clustered server may still answer with the
consumer being deleted; the node then bound to a consumer that was gone a moment
later, and fetched nothing ever again (seen in CI: a site caught up by diff, then
never received the next write). Here the consumer is created explicitly, its
start checked, and only then bound; a consumer that disappears under a running
link (deleted by an operator, lost by the servers) is found by ``exists`` and
made again from the node's own ack floor, not replayed from the beginning.
"""

from __future__ import annotations

import contextlib
import dataclasses

import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, ConsumerInfo, DeliverPolicy

from edgestate.errors import NatsLinkError

# Messages unacked at once: a few fetch batches (their applies share group commits).
MAX_ACK_PENDING = 2048
# A message not acked this long after delivery is delivered again.
ACK_WAIT_S = 60.0


def consumer_config(durable: str, start: int | None) -> ConsumerConfig:
    """The consumer's settings: every message of the stream, or from ``start`` on."""
    config = ConsumerConfig(
        durable_name=durable,
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=ACK_WAIT_S,
        max_ack_pending=MAX_ACK_PENDING,
    )
    if start is None:
        return config
    return dataclasses.replace(
        config, deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start
    )


async def open_consumer(
    js: JetStreamContext,
    stream: str,
    durable: str,
    *,
    start: int | None = None,
    resume_at: int | None = None,
) -> JetStreamContext.PullSubscription:
    """A subscription bound to this node's consumer.

    ``start``: the consumer is deleted and made again at that stream sequence.
    Otherwise the existing one is kept (it resumes at its ack floor); if there is
    none, it is made at ``resume_at`` (where this node's applies reached), or at
    the stream's first message for a node that never consumed.

    Raises ``NatsLinkError`` if the servers still show a consumer other than the
    one just asked for (the caller tries again), and nats errors as they come."""
    if start is not None:
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await js.delete_consumer(stream, durable)
        _check_start(await js.add_consumer(stream, consumer_config(durable, start)), start)
    elif not await exists(js, stream, durable):
        info = await js.add_consumer(stream, consumer_config(durable, resume_at))
        if resume_at is not None:
            _check_start(info, resume_at)
    return await js.pull_subscribe_bind(durable=durable, stream=stream)


async def exists(js: JetStreamContext, stream: str, durable: str) -> bool:
    """Whether the servers hold this node's consumer."""
    try:
        await js.consumer_info(stream, durable)
    except nats.js.errors.NotFoundError:
        return False
    return True


def _check_start(info: ConsumerInfo, start: int) -> None:
    config = info.config
    if config.deliver_policy != DeliverPolicy.BY_START_SEQUENCE or config.opt_start_seq != start:
        raise NatsLinkError(
            f"NATS consumer {info.name} still starts at {config.opt_start_seq or 'the first'} "
            f"message, not at {start}: the old one is not gone yet"
        )
