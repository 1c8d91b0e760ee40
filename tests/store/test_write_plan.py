"""WritePlan: many callers' batches in one CRDT transaction, on a real pycrdt Doc."""

from __future__ import annotations

import pytest

from edgestate.errors import WrongTypeError
from edgestate.store.crdt import CrdtDocument
from edgestate.store.keys import TAG_BYTES, TAG_COUNTER, pack_i64
from edgestate.store.types import Delete, Incr, Set


def test_a_hot_counter_costs_one_crdt_write_per_group() -> None:
    grouped = CrdtDocument("d", 7)
    plan = grouped.plan()
    totals = [plan.add([Incr("d", "hits", 1)])[0] for _ in range(100)]
    update, values = plan.execute()
    assert totals == list(range(1, 101))
    assert values == {"hits": TAG_COUNTER + pack_i64(100)}
    one_by_one = CrdtDocument("d", 7)
    sizes = []
    for _ in range(100):
        p = one_by_one.plan()
        p.add([Incr("d", "hits", 1)])
        u, _ = p.execute()
        assert u is not None
        sizes.append(len(u))
    assert update is not None
    # one slot write instead of 100: the log holds one small update, not 100
    assert len(update) <= sizes[0]
    assert sum(sizes) > 50 * len(update)
    assert grouped.value("hits") == one_by_one.value("hits") == TAG_COUNTER + pack_i64(100)


def test_last_write_per_key_wins_within_a_plan() -> None:
    doc = CrdtDocument("d", 7)
    plan = doc.plan()
    plan.add([Set("d", "a", b"1"), Incr("d", "c", 5)])
    plan.add([Set("d", "a", b"2"), Delete("d", "b")])
    plan.add([Set("d", "c", b"plain now"), Delete("d", "a")])
    _, values = plan.execute()
    assert values == {"a": None, "b": None, "c": TAG_BYTES + b"plain now"}
    assert doc.value("a") is None and doc.value("c") == TAG_BYTES + b"plain now"


def test_a_refused_batch_leaves_the_plan_as_it_was() -> None:
    doc = CrdtDocument("d", 7)
    plan = doc.plan()
    plan.add([Set("d", "p", b"plain")])
    with pytest.raises(WrongTypeError):
        plan.add([Incr("d", "n", 1), Incr("d", "p", 1)])
    _, values = plan.execute()
    assert values == {"p": TAG_BYTES + b"plain"}
    assert doc.value("n") is None
