"""The v1 update header walk (update_blocks) against updates pycrdt and Yjs produce."""

from __future__ import annotations

import random

import pycrdt
from pycrdt import Array, Doc, Map, Text, merge_updates

from edgestate.errors import InvalidUpdateError
from edgestate.store.codec import decode_state_vector
from edgestate.store.updates import update_blocks
from tests.store.test_replication import YJS_V1_UPDATE


def _rich_doc(client: int) -> Doc[Map[object]]:
    doc: Doc[Map[object]] = Doc(client_id=client)
    root = doc.get("root", type=Map)
    root["bytes"] = b"\x00\xff"
    root["text"] = "héllo"
    root["number"] = 5
    root["float"] = 2.5
    root["json"] = {"k": [1, 2.5, "s", None, True, False], "nested": {"deep": [[]]}}
    root["array"] = Array([1, "two", b"3"])
    root["rich"] = Text("some text")
    root["counter"] = b"1"
    root["counter"] = b"2"  # an overwrite: a deleted item
    del root["bytes"]
    return doc


def test_blocks_match_the_clients_of_every_update() -> None:
    a, b = _rich_doc(11), _rich_doc(22)
    for update in (a.get_update(), b.get_update(), merge_updates(a.get_update(), b.get_update())):
        blocks = update_blocks(update)
        assert blocks is not None
        assert {c for c, _ in blocks} == set(decode_state_vector(pycrdt.get_state(update)))
        assert all(start == 0 for _, start in blocks)
    assert update_blocks(YJS_V1_UPDATE) == [(42, 0)]


def test_a_later_update_starts_where_the_earlier_ended() -> None:
    doc = _rich_doc(7)
    before = doc.get_state()
    doc.get("root", type=Map)["more"] = b"x"
    (block,) = update_blocks(doc.get_update(before)) or []
    assert block == (7, decode_state_vector(before)[7])


def test_truncated_or_random_bytes_never_raise() -> None:
    update = merge_updates(_rich_doc(1).get_update(), _rich_doc(2).get_update())
    rng = random.Random(7)
    for cut in range(len(update)):
        _blocks_or_refused(update[:cut])
    for _ in range(500):
        _blocks_or_refused(rng.randbytes(rng.randrange(1, 64)))


def _blocks_or_refused(update: bytes) -> None:
    """None, a list, or a named refusal of content Yjs v1 does not have; nothing else."""
    try:
        update_blocks(update)
    except InvalidUpdateError as exc:
        assert "refuses" in str(exc)
