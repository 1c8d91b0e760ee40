"""What the parts of the NATS link see of it (``NatsLink`` implements ``LinkHost``)."""

from __future__ import annotations

import asyncio
from typing import Protocol

from nats.aio.client import Client
from nats.js import JetStreamContext

from edgestate.store import Store
from edgestate.sync import frames, parts
from edgestate.sync.config import Limits
from edgestate.sync.nats_config import NatsConfig
from edgestate.sync.nats_stats import NatsStats
from edgestate.sync.nats_subjects import Subjects


class LinkHost(Protocol):
    """The link's state and calls its inbound side and anti-entropy use."""

    store: Store
    config: NatsConfig
    limits: Limits
    assembly_budget: parts.AssemblyBudget | None
    local_only: frozenset[str]
    node_id: str
    subjects: Subjects
    stats: NatsStats

    @property
    def max_payload(self) -> int:
        """The largest frame one message may carry."""
        ...

    @property
    def client(self) -> tuple[Client, JetStreamContext]:
        """The connection; NatsLinkError while there is none."""
        ...

    async def publish_core(self, subject: str, frame: frames.Frame, reply: str = "") -> None:
        """Publish one sealed frame on a plain (not stored) subject."""
        ...


def raise_if_cancelled() -> None:
    """Re-raise a cancellation nats-py swallowed.

    nats-py 2.x catches ``CancelledError`` inside ``publish`` (its flush), so a
    task cancelled there carries on; a retry loop would then never stop (found
    in tests: a node closing while its NATS server was gone hung). The task's
    ``cancelling()`` count still says it was asked to stop.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
