"""Cutting a peer's outbound queue into push frames (edgestate.sync.push), with
real Yjs updates: merged per document, bounded per frame, an oversized update
dropping the queue but not what was taken before it."""

from __future__ import annotations

import collections

from pycrdt import Doc, Map

from edgestate.sync.push import PUSH_CHUNK_BYTES, take_push


def _updates(count: int, size: int = 8) -> list[bytes]:
    doc: Doc = Doc()
    doc["m"] = data = Map()
    out = []
    for i in range(count):
        before = doc.get_state()
        data[f"k{i}"] = "x" * size
        out.append(doc.get_update(before))
    return out


def _applied(update: bytes) -> dict[str, object]:
    doc: Doc = Doc()
    doc.apply_update(update)
    return dict(doc.get("m", type=Map))


def test_updates_of_one_document_are_merged_into_one_item() -> None:
    a, b, c = _updates(3)
    queue = collections.deque([("d", a), ("e", b), ("d", c)])
    batch = take_push(queue, max_update_bytes=1 << 20)
    assert not queue and not batch.oversized and batch.updates == 3
    assert batch.frame is not None
    items = dict(batch.frame.updates)
    assert list(items) == ["d", "e"]
    assert items["e"] == b
    assert sorted(_applied(items["d"])) == ["k0", "k2"]


def test_a_frame_stops_at_the_chunk_size_and_the_rest_waits() -> None:
    big = _updates(3, size=PUSH_CHUNK_BYTES // 2 + 1)
    queue = collections.deque(("d", u) for u in big)
    first = take_push(queue, max_update_bytes=PUSH_CHUNK_BYTES)
    assert first.updates == 2 and len(queue) == 1
    second = take_push(queue, max_update_bytes=PUSH_CHUNK_BYTES)
    assert second.updates == 1 and not queue
    assert take_push(queue, max_update_bytes=PUSH_CHUNK_BYTES) == (None, 0, False)


def test_an_oversized_update_drops_the_queue_after_what_was_taken() -> None:
    small, later = _updates(2)
    (huge,) = _updates(1, size=4096)
    queue = collections.deque([("d", small), ("d", huge), ("d", later)])
    batch = take_push(queue, max_update_bytes=1024)
    assert batch.oversized and not queue
    assert batch.frame is not None and batch.frame.updates == (("d", small),)
    only_huge = collections.deque([("d", huge)])
    assert take_push(only_huge, max_update_bytes=1024) == (None, 0, True)
