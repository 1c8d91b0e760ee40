"""Diffs in parts over NATS share the node's assembly budget with the LAN links.

A sender's parts come back to back on its document subject; one that never
finishes (it restarted, the stream dropped a part) must not hold its share of
the budget forever, and one that declares more than the budget is refused.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import nats
import pytest

from edgestate.store import Set
from edgestate.sync import frames, nats_inbound
from edgestate.sync.config import Limits
from edgestate.sync.frames import DiffPart
from edgestate.sync.nats_seal import Sealer
from tests.sync.conftest import Node, Nodes, eventually
from tests.sync.nats_sites import NATS_PASSWORD, NATS_USER, nats_config, nats_servers, ready, value

pytestmark = [
    pytest.mark.skipif(
        shutil.which("nats-server") is None, reason="nats-server not installed (scripts/bootstrap)"
    ),
    pytest.mark.timeout(90),
]
# Room for one diff of ~2 MiB at a time (a NATS message is at most 1 MiB here).
TIGHT = Limits(max_diff_frame_bytes=4 << 20, max_assembly_bytes=3 << 20)


async def tight_and_member(nodes: Nodes, tmp: Path, url: str) -> tuple[Node, Node]:
    """A node with the TIGHT budget and a plain member, both linked through ``url``."""
    ours = await nodes.start(nats=nats_config(tmp, [url]), limits=TIGHT)
    member = await nodes.start(nats=nats_config(tmp, [url]))
    await ready([ours, member])
    return ours, member


async def publish_part(member: Node, url: str, part: DiffPart) -> None:
    link = member.daemon.nats
    assert link is not None
    nc = await nats.connect(url, user=NATS_USER, password=NATS_PASSWORD)
    try:
        subject = link.subjects.doc(part.doc)
        sealed = Sealer(member.daemon.config.tls, member.daemon.node_id).seal(
            subject, frames.encode(part)
        )
        await nc.jetstream().publish(subject, sealed)
    finally:
        await nc.close()


async def big_write(member: Node, doc: str) -> None:
    """Two 900 KiB values in one commit: one update published as diff parts."""
    member.store.create_document(doc)
    await member.store.abatch([Set(doc, "a", bytes(900 << 10)), Set(doc, "b", bytes(900 << 10))])


async def test_a_part_declaring_more_than_the_budget_is_refused(
    nodes: Nodes, tmp_path: Path
) -> None:
    async with nats_servers(nodes, tmp_path / "nats") as servers:
        url = servers[0].url
        ours, member = await tight_and_member(nodes, tmp_path, url)
        assert ours.daemon.nats is not None
        # 8 parts of 512 KiB declare 4 MiB: over the 3 MiB budget.
        await publish_part(member, url, DiffPart("huge", 0, 8, bytes(512 << 10)))
        await big_write(member, "after")  # fits: it arrives, and so nothing is held
        await eventually(lambda: value(ours.store, "after", "b") is not None, 30)
        assert not ours.store.has_document("huge")
        assert ours.daemon.nats.stats.malformed >= 1


async def test_a_senders_next_diff_replaces_its_unfinished_one(
    nodes: Nodes, tmp_path: Path
) -> None:
    async with nats_servers(nodes, tmp_path / "nats") as servers:
        url = servers[0].url
        ours, member = await tight_and_member(nodes, tmp_path, url)
        # Part 0 of 5 from the member, the rest never sent (as if it restarted).
        await publish_part(member, url, DiffPart("stuck", 0, 5, bytes(512 << 10)))
        await eventually(lambda: ours.daemon.assembly_bytes_held > 0, 30)
        await big_write(member, "next")  # its part 0 starts afresh
        await eventually(lambda: value(ours.store, "next", "b") is not None, 30)
        assert not ours.store.has_document("stuck")
        assert ours.daemon.assembly_bytes_held == 0


async def test_an_idle_unfinished_diff_gives_its_share_of_the_budget_back(
    nodes: Nodes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(nats_inbound, "ASSEMBLY_IDLE_S", 1.0)
    async with nats_servers(nodes, tmp_path / "nats") as servers:
        url = servers[0].url
        ours = await nodes.start(
            nats=nats_config(tmp_path, [url]),
            limits=Limits(
                max_diff_frame_bytes=4 << 20, max_assembly_bytes=3 << 20, assembly_wait_s=5.0
            ),
        )
        stalled = await nodes.start(nats=nats_config(tmp_path, [url]))
        writer = await nodes.start(nats=nats_config(tmp_path, [url]))
        await ready([ours, stalled, writer])
        # Part 0 of a 2.5 MiB diff whose other parts never come: it holds 2.5 MiB.
        await publish_part(stalled, url, DiffPart("stuck", 0, 5, bytes(512 << 10)))
        await eventually(lambda: ours.daemon.assembly_bytes_held > 0, 30)
        # Another sender's ~1.8 MiB diff in parts does not fit beside it until the
        # stuck one is dropped as idle (1 s here; the diff may wait 5).
        await big_write(writer, "later")
        await eventually(lambda: value(ours.store, "later", "b") is not None, 30)
        assert not ours.store.has_document("stuck")
        assert ours.daemon.stats.assembly_waits >= 1
        await eventually(lambda: ours.daemon.assembly_bytes_held == 0, 10)
