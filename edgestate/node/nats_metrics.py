"""Metrics of the NATS link between sites (``edgestate_nats_*``), read at scrape time."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.metrics_core import Metric

from edgestate.node.metrics import counter, gauge
from edgestate.sync import NatsLink


def nats_metrics(link: NatsLink | None) -> Iterable[Metric]:
    """The link's counters (nothing when the node has no ``[sync.nats]``)."""
    if link is None:
        return
    stats = link.stats
    yield gauge(
        "edgestate_nats_connected", "Whether the NATS link is up.", [], [([], stats.connected)]
    )
    yield counter(
        "edgestate_nats_bytes",
        "Bytes over the NATS link (message payloads and subjects).",
        ["direction"],
        [(["in"], stats.bytes_in), (["out"], stats.bytes_out)],
    )
    yield counter(
        "edgestate_nats_messages",
        "Messages over the NATS link.",
        ["direction"],
        [(["in"], stats.messages_in), (["out"], stats.messages_out)],
    )
    yield counter(
        "edgestate_nats_updates",
        "Updates published to the stream, applied from it, or dropped while the link was down.",
        ["what"],
        [
            (["published"], stats.updates_published),
            (["applied"], stats.updates_applied),
            (["dropped"], stats.updates_dropped),
        ],
    )
    yield gauge(
        "edgestate_nats_pending_bytes",
        "Update bytes waiting to be published.",
        [],
        [([], stats.pending_bytes)],
    )
    yield gauge(
        "edgestate_nats_stream_lag",
        "Stream messages not yet delivered to this node's consumer.",
        [],
        [([], stats.consumer_pending)],
    )
    yield counter(
        "edgestate_nats_refused",
        "Messages dropped: not sealed by a member of this cluster.",
        [],
        [([], stats.refused)],
    )
    yield counter(
        "edgestate_nats_malformed",
        "Messages dropped as malformed (or refused by the store).",
        [],
        [([], stats.malformed)],
    )
    yield counter(
        "edgestate_nats_reconnects", "Reconnections to NATS.", [], [([], stats.reconnects)]
    )
    yield counter(
        "edgestate_nats_anti_entropy_rounds",
        "State-vector exchanges this node asked for over NATS.",
        [],
        [([], stats.anti_entropy_rounds)],
    )
    yield counter(
        "edgestate_nats_anti_entropy_reasks",
        "Targeted state-vector requests sent again (no responder yet, or nothing back).",
        [],
        [([], stats.anti_entropy_reasks)],
    )
    yield counter(
        "edgestate_nats_stream_gaps",
        "Times the stream dropped messages (retention) before this node applied them.",
        [],
        [([], stats.stream_gaps)],
    )
    yield counter(
        "edgestate_nats_consumers_lost",
        "Times this node's consumer was found gone and made again from its ack floor.",
        [],
        [([], stats.consumers_lost)],
    )
