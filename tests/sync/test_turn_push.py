"""The first push of a turn goes in that turn; the rest of the turn's updates
still share one frame (edgestate.sync.turn_push)."""

from __future__ import annotations

import asyncio
import collections

import pytest

from edgestate.sync.turn_push import TurnPush
from tests.store.writer_hold import one_key_update
from tests.sync.conftest import Node, Nodes, eventually, memory_link, settled

pytestmark = pytest.mark.timeout(30)


async def test_one_push_per_turn_runs_now_and_the_next_turn_may_push_again() -> None:
    ran: list[int] = []

    async def push() -> None:
        ran.append(len(ran))

    turn = TurnPush(lambda: "peer")
    assert turn.start(push) is True and ran == [0]  # in this turn, no task
    assert turn.start(push) is False and ran == [0]  # the sender's job now
    await asyncio.sleep(0)
    assert turn.start(push) is True and ran == [0, 1]


async def test_a_push_that_waits_for_the_socket_is_owned_and_cancelled() -> None:
    gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    ended: list[str] = []

    async def push() -> None:
        try:
            await gate
        finally:
            ended.append("ended")

    turn = TurnPush(lambda: "peer")
    assert turn.start(push)
    await asyncio.sleep(0)
    assert ended == []
    turn.cancel()
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert ended == ["ended"] and gate.cancelled()


async def test_a_burst_queued_in_one_turn_reaches_the_peer_in_few_frames(nodes: Nodes) -> None:
    a = await nodes.start()
    b = await nodes.start()
    pushed: collections.Counter[str] = collections.Counter()
    memory_link(a, b, pushed)
    a.store.create_document("burst")
    await a.daemon.wait_connected(1)
    await streaming(a, b, pushed)
    await settled([a, b])
    pushed.clear()
    # A's submit listener relays each announced update as it is submitted: 100
    # enqueues in one turn of the loop.
    applied = [
        a.store.submit_update("burst", one_key_update(f"k{i}"), origin="yjs:1") for i in range(100)
    ]
    assert pushed["burst"] == 1  # the first, pushed in this turn (no await yet)
    await asyncio.gather(*applied)
    await eventually(
        lambda: (
            b.store.has_document("burst")
            and all(b.store.get("burst", f"k{i}") == b"v" for i in range(100))
        )
    )
    # Then the sender's one push item for the 99 others (merged), not 99 more frames.
    assert pushed["burst"] == 2


async def streaming(a: Node, b: Node, pushed: collections.Counter[str]) -> None:
    """Wait until a's link streams: only then does an update go out in the turn it
    was queued (during the handshake it waits for the sender). Probes until one
    does, and until b holds it (so b has the burst's document too)."""
    for attempt in range(200):
        before = pushed["burst"]
        key = f"probe{attempt}"
        done = a.store.submit_update("burst", one_key_update(key), origin="yjs:1")
        eager = pushed["burst"] > before
        await done
        if eager:
            await eventually(
                lambda: (
                    b.store.has_document("burst") and b.store.get("burst", key) == b"v"  # noqa: B023 (awaited here)
                )
            )
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the link never streamed")
