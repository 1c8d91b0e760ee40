"""A targeted anti-entropy request is sent again when it was lost (core NATS).

Catch-up by diff asks one node alone; a request that reaches nobody (a server
just restarted has no route to the target yet) or is dropped on the way used to
wait out the whole 60 s window, and the node then replayed the stream instead
(seen in CI as ``catchups_by_diff == 0``)."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import nats
import pytest
from nats.aio.msg import Msg

from edgestate.store import Set
from edgestate.sync import tls
from edgestate.sync.nats_subjects import durable_name
from tests.sync.conftest import Nodes, eventually
from tests.sync.nats_sites import (
    NATS_PASSWORD,
    NATS_USER,
    nats_config,
    nats_servers,
    ready,
    value,
)

pytestmark = pytest.mark.skipif(
    shutil.which("nats-server") is None, reason="nats-server not installed (scripts/bootstrap)"
)
DOC = "shared"


def _future_node(nodes: Nodes) -> tuple[str, Path, str]:
    """A node's name, certificates and durable consumer name, before it starts."""
    name, certs = nodes.cluster.issue()
    node_id = tls.load_identity(tls.files_for(certs, name)).node_id
    return name, certs, durable_name(node_id)


@pytest.mark.parametrize("lost", ["no_responders", "dropped"])
async def test_a_targeted_request_lost_on_the_way_is_asked_again(
    nodes: Nodes, tmp_path: Path, lost: str
) -> None:
    async with nats_servers(nodes, tmp_path / "nats") as servers:
        url = servers[0].url
        asker = await nodes.start(nats=nats_config(tmp_path, [url]))
        await ready([asker])
        link = asker.daemon.nats
        assert link is not None
        name, certs, durable = _future_node(nodes)
        subject = link.entropy.direct(durable)

        # "dropped": something holds interest in the subject but never answers, as
        # when the request is lost on its way to a reconnecting target.
        swallowed: list[Msg] = []
        raw = await nats.connect(url, user=NATS_USER, password=NATS_PASSWORD)
        try:
            if lost == "dropped":

                async def swallow(msg: Msg) -> None:
                    swallowed.append(msg)

                swallower = await raw.subscribe(subject, cb=swallow)
                await raw.flush()
            asking = asyncio.create_task(link.entropy.round(target=durable))
            if lost == "dropped":
                await eventually(lambda: len(swallowed) >= 1, 30)
                await swallower.unsubscribe()
                await raw.flush()
            else:
                # The server answered "no responders" and the asker asked again.
                await eventually(lambda: link.stats.anti_entropy_reasks >= 1, 30)
            target = await nodes.start(name=name, certs=certs, nats=nats_config(tmp_path, [url]))
            target.store.create_document(DOC)
            target.store.batch([Set(DOC, "k", b"v")])
            await ready([target])
            answered = await asyncio.wait_for(asking, 90)
        finally:
            await raw.close()
        assert any(durable_name(sender) == durable for sender in answered), (
            answered,
            link.stats.snapshot(),
        )
        assert link.stats.anti_entropy_reasks >= 1
        # The server's "no responders" status is not taken for a member's bad message.
        assert link.stats.malformed == 0, link.stats.snapshot()
        # The target's diff arrived with its answer.
        await eventually(lambda: value(asker.store, DOC, "k") == b"v", 30)
