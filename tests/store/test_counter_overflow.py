"""No value can stall a document's merges: counters past int64 read saturated, and
slots or plain values of odd shapes from foreign peers materialize in a defined way.

Between real stores exchanging state vectors and diffs, as the sync layer does.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from pycrdt import Array, Doc, Map, Text, XmlFragment

from edgestate.errors import ValueTooLargeError
from edgestate.store import Incr, Set, Store

I64_MAX = (1 << 63) - 1
I64_MIN = -(1 << 63)


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[Store, Store]]:
    a = Store.open(tmp_path / "a")
    b = Store.open(tmp_path / "b")
    for s in (a, b):
        s.create_document("d")
    yield a, b
    a.close()
    b.close()


def heal(x: Store, y: Store, doc: str = "d") -> None:
    """Anti-entropy both ways: each side applies the diff the other lacks."""
    y.apply_update(doc, x.diff(doc, y.state_vector(doc)), origin="x", create=True)
    x.apply_update(doc, y.diff(doc, x.state_vector(doc)), origin="y", create=True)


@pytest.mark.parametrize(("big", "small", "reads"), [(I64_MAX, 1, I64_MAX), (I64_MIN, -1, I64_MIN)])
def test_partitioned_increments_past_int64_merge_and_read_saturated(
    tmp_path: Path, pair: tuple[Store, Store], big: int, small: int, reads: int
) -> None:
    a, b = pair
    # Each legal on its own side of the partition.
    assert a.incr("d", "n", big) == big
    assert b.incr("d", "n", small) == small
    b.set("d", "other", b"from b")
    heal(a, b)
    for s in (a, b):
        assert s.get_counter("d", "n") == reads
        assert s.get("d", "other") == b"from b"
    # The document keeps replicating: other keys, both ways.
    a.set("d", "later", b"from a")
    b.batch([Set("d", "later-b", b"from b"), Incr("d", "m", 3)])
    heal(a, b)
    for s in (a, b):
        assert s.get("d", "later") == b"from a"
        assert s.get("d", "later-b") == b"from b"
        assert s.get_counter("d", "m") == 3
    # And it survives a restart (the CRDT is rebuilt from the log).
    a.close()
    with Store.open(tmp_path / "a") as again:
        assert again.get_counter("d", "n") == reads
        assert again.incr("d", "m", 1) == 4


def test_a_saturated_counter_refuses_increments_away_from_the_range(
    pair: tuple[Store, Store],
) -> None:
    a, b = pair
    a.incr("d", "n", I64_MAX)
    b.incr("d", "n", 1)
    heal(a, b)  # the slots sum to 2**63: one past the range
    with pytest.raises(ValueTooLargeError, match="d/n would overflow int64"):
        a.incr("d", "n", 1)
    with pytest.raises(ValueTooLargeError):
        b.batch([Set("d", "x", b"1"), Incr("d", "n", 5)])
    assert b.get("d", "x") is None  # refused as a whole
    # Towards the range: accepted, and it returns what a read then shows.
    assert a.incr("d", "n", -1) == I64_MAX  # the slots sum to I64_MAX exactly
    assert a.get_counter("d", "n") == I64_MAX
    assert a.incr("d", "n", -1) == I64_MAX - 1
    heal(a, b)
    assert b.get_counter("d", "n") == I64_MAX - 1


def _foreign_update(fill: callable) -> bytes:  # type: ignore[valid-type]
    """An update from a plain pycrdt peer (a Yjs client) that ``fill`` writes."""
    doc: Doc = Doc(client_id=4242)
    fill(doc.get("root", type=Map), doc.get("counters", type=Map))
    return bytes(doc.get_update())


def test_counter_slots_of_foreign_shapes_count_as_zero(pair: tuple[Store, Store]) -> None:
    a, b = pair
    a.incr("d", "n", 5)

    def fill(root: Map, counters: Map) -> None:  # type: ignore[type-arg]
        counters["n\x00777"] = "seven"
        counters["n\x00778"] = 7
        counters["n\x00779"] = b"\x01\x02\x03"
        counters["n\x00780"] = Map({"x": 1})
        counters["noslot"] = b"\x01" * 8  # no separator: not a slot at all
        root["plain"] = b"ok"

    a.apply_update("d", _foreign_update(fill), origin="yjs")
    heal(a, b)
    for s in (a, b):
        assert s.get_counter("d", "n") == 5
        assert s.get("d", "plain") == b"ok"
        assert s.get("d", "noslot") is None
    assert a.incr("d", "n", 1) == 6


def _odd_values(root: Map, counters: Map) -> None:  # type: ignore[type-arg]
    root["array"] = Array([1, "two", b"\x03"])
    root["text"] = Text("hello")
    root["xml"] = XmlFragment()
    root["subdoc"] = Doc()
    root["nan"] = float("nan")
    root["inf"] = float("-inf")
    root["null"] = None
    root["nested"] = {"a": [1.5, {"b": b"\xff"}], "c": True}
    deep: list[object] = []
    cur = deep
    for _ in range(60):  # as deep as the codec lets in (deeper is refused there)
        nxt: list[object] = []
        cur.append(nxt)
        cur = nxt
    root["deep"] = deep
    root["plain"] = b"still here"


def test_plain_values_of_odd_types_materialize_the_same_everywhere(
    pair: tuple[Store, Store],
) -> None:
    a, b = pair
    update = _foreign_update(_odd_values)
    a.apply_update("d", update, origin="yjs")
    heal(a, b)
    for s in (a, b):
        assert s.get("d", "plain") == b"still here"
        assert s.get("d", "text") == b'"hello"'  # a Y.Text reads as its string, in JSON
        assert json.loads(s.get("d", "array") or b"") == [1, "two", "Aw=="]
        assert json.loads(s.get("d", "nested") or b"") == {"a": [1.5, {"b": "/w=="}], "c": True}
        for key in ("xml", "subdoc", "nan", "inf", "null"):
            assert s.get("d", key) == b"null", key
        deep = s.get("d", "deep")
        assert deep is not None and deep == b"[" * 61 + b"]" * 61
    assert a.scan("d", limit=100).items == b.scan("d", limit=100).items
    # The document still takes and passes on writes.
    a.set("d", "after", b"1")
    heal(a, b)
    assert b.get("d", "after") == b"1"
