"""The node-wide budget for diffs in parts: all assemblies together are bounded.

Each connection may hold one diff in parts of up to ``max_diff_frame_bytes``; with
many links that multiplies, so ``max_assembly_bytes`` bounds their sum. An
assembly reserves its declared size at part 0, all or nothing, first come first
served: a second big diff waits (its peer's frames stay unread) instead of both
holding half and waiting for each other.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest
from aiohttp import WSCloseCode

from edgestate.errors import AssemblyBusyError, OversizedFrameError
from edgestate.sync import frames, parts
from edgestate.sync.config import Limits
from edgestate.sync.frames import Diff, DiffPart
from tests.sync.conftest import Cluster, Nodes, RawPeer, eventually
from tests.sync.test_frame_limits import closed_by, real_update, still_serves

pytestmark = pytest.mark.timeout(60)

FRAME = 64 << 10
# Room for one ~600 KiB diff in parts at a time, not two.
TIGHT = Limits(max_frame_bytes=FRAME, max_diff_frame_bytes=1 << 20, max_assembly_bytes=1 << 20)


def big_diff(doc: str, key: str) -> list[frames.Frame]:
    """A real diff of ~600 KiB, split as a node would send it."""
    pieces = parts.split(Diff(doc, real_update(key, bytes(600 << 10))), FRAME)
    assert len(pieces) > 5
    return pieces


async def test_the_budget_is_all_or_nothing_and_first_come_first_served() -> None:
    budget = parts.AssemblyBudget(1000, wait_s=5)
    await budget.reserve(600, "a")
    second = asyncio.ensure_future(budget.reserve(600, "b"))
    third = asyncio.ensure_future(budget.reserve(100, "c"))  # fits, but waits behind b
    await asyncio.sleep(0)
    assert not second.done() and not third.done() and budget.used == 600
    budget.release(600)
    await asyncio.gather(second, third)
    assert budget.used == 700
    budget.release(600)
    budget.release(100)
    assert budget.used == 0


async def test_a_waiter_that_gives_up_leaves_the_line() -> None:
    budget = parts.AssemblyBudget(1000, wait_s=0.05)
    await budget.reserve(900, "a")
    with pytest.raises(AssemblyBusyError, match="held by other peers"):
        await budget.reserve(500, "b")
    waiting = asyncio.ensure_future(budget.reserve(50, "c"))  # nobody ahead of it now
    await asyncio.wait_for(waiting, 1)
    cancelled = asyncio.ensure_future(budget.reserve(500, "d"))
    await asyncio.sleep(0)
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    budget.release(950)
    assert budget.used == 0


async def test_more_than_the_whole_budget_is_refused_at_once() -> None:
    budget = parts.AssemblyBudget(1000)
    with pytest.raises(OversizedFrameError, match="over the node's 1000"):
        await budget.reserve(1001, "diff of docs in parts")
    assert budget.used == 0


async def test_two_peers_big_diffs_take_turns_and_both_apply(
    nodes: Nodes, cluster: Cluster
) -> None:
    a = await nodes.start(limits=TIGHT)
    first, second = RawPeer(cluster), RawPeer(cluster)
    one, two = big_diff("one", "k1"), big_diff("two", "k2")
    try:
        await first.connect(a)
        await second.connect(a)
        await first.send(one[0])  # holds ~600 KiB of the 1 MiB
        # Two connections: the node may read second's part 0 first (seen in CI).
        await eventually(lambda: a.daemon.assembly_bytes_held > 0)
        for frame in two:  # its part 0 cannot fit: it waits, its frames unread
            await second.send(frame)
        await eventually(lambda: a.daemon.stats.assembly_waits >= 1)
        assert not a.store.has_document("two")
        for frame in one[1:]:
            await first.send(frame)
        await eventually(
            lambda: (
                all(a.store.has_document(d) for d in ("one", "two"))
                and a.store.get("two", "k2") is not None
            )
        )
    finally:
        await first.close()
        await second.close()
    assert a.store.get("one", "k1") == bytes(600 << 10)
    assert sum(a.daemon.stats.protocol_errors.values()) == 0


async def test_a_diff_that_waits_too_long_is_told_to_try_again_later(
    nodes: Nodes, cluster: Cluster
) -> None:
    a = await nodes.start(limits=replace(TIGHT, assembly_wait_s=0.2))
    holder = RawPeer(cluster)
    try:
        await holder.connect(a)
        await holder.send(big_diff("one", "k1")[0])  # holds the budget and never finishes
        await eventually(lambda: a.daemon.assembly_bytes_held > 0)
        code, reason = await closed_by(cluster, a, big_diff("two", "k2")[0])
    finally:
        await holder.close()
    assert code == 1013, (code, reason)  # try again later: not that peer's fault
    assert reason.startswith("assembly_busy:"), reason
    # The holder's connection ended: its reservation was given back.
    await eventually(lambda: a.daemon.assembly_bytes_held == 0)
    late = RawPeer(cluster)
    try:
        await late.connect(a)
        for frame in big_diff("three", "k3"):
            await late.send(frame)
        await eventually(lambda: a.store.has_document("three") and a.store.get("three", "k3"))
    finally:
        await late.close()


async def test_a_diff_declared_past_the_budget_closes_only_that_peer(
    nodes: Nodes, cluster: Cluster
) -> None:
    a = await nodes.start(limits=TIGHT)
    b = await nodes.start([a], limits=TIGHT)
    await b.daemon.wait_connected(1)
    # Two parts of 100 bytes reserve 200: a second part of 200 overruns it.
    code, reason = await closed_by(
        cluster, a, DiffPart("docs", 0, 2, b"x" * 100), DiffPart("docs", 1, 2, b"x" * 200)
    )
    assert code == WSCloseCode.MESSAGE_TOO_BIG, (code, reason)
    assert "larger than part 0" in reason, reason
    await still_serves(a, b, "after-overrun")


async def test_a_budget_smaller_than_a_diff_refuses_it_naming_the_node_limit(
    nodes: Nodes, cluster: Cluster
) -> None:
    small = Limits(max_frame_bytes=FRAME, max_diff_frame_bytes=4 << 20, max_assembly_bytes=1 << 20)
    a = await nodes.start(limits=small)
    b = await nodes.start([a], limits=small)
    await b.daemon.wait_connected(1)
    code, reason = await closed_by(
        cluster, a, *[DiffPart("docs", i, 40, b"x" * (60 << 10)) for i in range(2)]
    )
    assert code == WSCloseCode.MESSAGE_TOO_BIG, (code, reason)
    assert "over the node's 1048576" in reason, reason
    await still_serves(a, b, "after-refusal")
