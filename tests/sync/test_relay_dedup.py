"""Duplicate push copies are dropped before the store, and a relay skips peers that
sent us the update: the table itself, then a ring of real daemons on 127.0.0.1
where every write reaches one node along two paths."""

from __future__ import annotations

import pytest
from pycrdt import Doc, Map

from edgestate.node.metrics import layer_metrics
from edgestate.store import Set
from edgestate.sync.dedup import MAX_DIGESTED_BYTES, RecentUpdates, covered_by, digest
from tests.sync.conftest import Nodes, eventually

pytestmark = pytest.mark.timeout(60)

DOC = "shared"


def _update(key: str, size: int = 8) -> bytes:
    doc: Doc = Doc()
    doc.get("root", type=Map)[key] = "v" * size
    update: bytes = doc.get_update()
    return update


def test_a_copy_is_a_duplicate_only_once_the_first_was_remembered() -> None:
    recent = RecentUpdates()
    update = _update("k")
    # Not yet submitted (e.g. its sender was refused first): the next copy applies.
    assert not recent.duplicate(digest(DOC, update), "a")
    recent.remember(digest(DOC, update), "a")
    assert recent.duplicate(digest(DOC, update), "b")
    assert recent.holders(digest(DOC, update)) == {"a", "b"}
    # The same bytes for another document are another update.
    assert not recent.duplicate(digest("other", update), "c")
    assert recent.holders(digest("other", update)) == frozenset()


def test_the_table_is_bounded_and_forgets_the_oldest_first() -> None:
    recent = RecentUpdates(capacity=3)
    updates = [_update(f"k{i}") for i in range(4)]
    for update in updates:
        recent.remember(digest(DOC, update), "a")
    assert len(recent) == 3
    assert not recent.duplicate(digest(DOC, updates[0]), "b")
    assert all(recent.duplicate(digest(DOC, u), "b") for u in updates[1:])


def test_big_updates_and_a_zero_capacity_are_not_remembered() -> None:
    big = _update("big", MAX_DIGESTED_BYTES + 1)
    recent = RecentUpdates()
    recent.remember(digest(DOC, big), "a")
    assert not recent.duplicate(digest(DOC, big), "b")
    off = RecentUpdates(capacity=0)
    small = _update("k")
    off.remember(digest(DOC, small), "a")
    assert not off.duplicate(digest(DOC, small), "b") and len(off) == 0


def test_a_relay_skips_holders_and_their_peers() -> None:
    recent = RecentUpdates()
    update = _update("k")
    recent.remember(digest(DOC, update), "s")  # the sender
    assert recent.duplicate(digest(DOC, update), "h")  # another copy, from h, meanwhile
    peers = {"s": frozenset({"x", "me"}), "h": frozenset({"y", "me"})}
    covered = covered_by(recent.holders(digest(DOC, update)), lambda n: peers.get(n, frozenset()))
    assert covered == {"s", "h", "x", "y", "me"}
    assert covered_by([], lambda n: frozenset({"z"})) == frozenset()


async def test_copies_arriving_along_two_paths_are_dropped_before_the_store(
    nodes: Nodes,
) -> None:
    """A ring a-b-c-d-a: each write on ``a`` reaches ``c`` through ``b`` and through
    ``d`` (neither is the other's neighbour, so both relay). Whoever hears it second
    on the closing link holds a byte-identical copy and drops it."""
    b = await nodes.start()
    c = await nodes.start(peers=[b])
    d = await nodes.start(peers=[c])
    a = await nodes.start(peers=[b, d])
    ring = [a, b, c, d]
    await eventually(lambda: all(len(n.daemon.connected()) == 2 for n in ring))
    a.store.create_document(DOC)
    writes = 20
    for i in range(writes):
        # One at a time, as lone writes travel: each crosses the ring as the bytes
        # a's writer made (a backlog would be merged into other bytes per link).
        await a.store.abatch([Set(DOC, f"k{i}", b"v")])
        await eventually(
            lambda i=i: all(  # type: ignore[misc]
                n.store.has_document(DOC) and n.store.get(DOC, f"k{i}") == b"v" for n in ring
            )
        )
    # At least one copy per write met a node that had it already; without the
    # table each would have gone to that node's store as a no-op apply.
    await eventually(lambda: sum(n.daemon.stats.duplicates_dropped for n in ring) >= writes)
    # The writer's own copies are never duplicates: nobody sends them back to it.
    assert a.daemon.stats.duplicates_dropped == 0
    # And an operator sees the count on /metrics.
    for n in ring:
        (family,) = [
            m
            for m in layer_metrics(n.store, n.daemon)
            if m.name == "edgestate_sync_duplicates_dropped"
        ]
        assert family.samples[0].value == n.daemon.stats.duplicates_dropped
