"""Remote updates between real stores: convergence, idempotence, refusal of bad bytes."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from pycrdt import Doc, Map, merge_updates

from edgestate.errors import InvalidUpdateError, UnsupportedUpdateEncodingError
from edgestate.store import ChangeEvent, Set, Store

# Produced by the real `yjs` npm package (13.x), a doc with clientID 42 whose map
# "root" holds k -> Uint8Array[1,2,3] and s -> "str":
#   Y.encodeStateAsUpdateV2(doc) and Y.encodeStateAsUpdate(doc)
YJS_V2_UPDATE = bytes.fromhex(
    "0000012a0000032300280f0a726f6f746b726f6f747304010401010100010101020003010203770373747200"
)
YJS_V1_UPDATE = bytes.fromhex("01022a00230104726f6f74016b03010203280104726f6f74017301770373747200")
YJS_V2_EMPTY = bytes.fromhex("00000000000001000000000000")


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[Store, Store]]:
    a = Store.open(tmp_path / "a")
    b = Store.open(tmp_path / "b")
    for s in (a, b):
        s.create_document("d")
    yield a, b
    a.close()
    b.close()


def _capture(store: Store) -> list[bytes]:
    updates: list[bytes] = []
    store.subscribe(lambda e: updates.append(e.update) if e.origin is None else None)
    return updates


def _state(store: Store) -> list[tuple[str, bytes]]:
    return store.scan("d", limit=10_000).items


@pytest.mark.parametrize("order", ["a_first", "b_first"])
def test_concurrent_counters_converge_in_either_order(
    pair: tuple[Store, Store], order: str
) -> None:
    a, b = pair
    ua, ub = _capture(a), _capture(b)
    for _ in range(5):
        a.incr("d", "hits", 1)
    for _ in range(3):
        b.incr("d", "hits", 10)
    a.set("d", "who", b"a")
    b.set("d", "who", b"b")
    if order == "a_first":
        for u in ua:
            b.apply_update("d", u, origin="a")
        for u in ub:
            a.apply_update("d", u, origin="b")
    else:
        for u in reversed(ub):
            a.apply_update("d", u, origin="b")
        for u in reversed(ua):
            b.apply_update("d", u, origin="a")
    assert a.get_counter("d", "hits") == b.get_counter("d", "hits") == 35
    assert _state(a) == _state(b)  # last-writer-wins on "who" picks the same value on both


def test_reapplying_updates_is_idempotent_and_silent(pair: tuple[Store, Store]) -> None:
    a, b = pair
    ua = _capture(a)
    a.batch([Set("d", "x", b"1"), Set("d", "y", b"2")])
    a.incr("d", "n", 7)
    remote: list[ChangeEvent] = []
    b.subscribe(remote.append)
    assert all(b.apply_update("d", u, origin="a") for u in ua)
    before = (_state(b), b.document_info("d").log_entries)
    events = len(remote)
    for u in ua + ua:
        assert b.apply_update("d", u, origin="a") is False
    assert (_state(b), b.document_info("d").log_entries) == before
    assert len(remote) == events  # a no-op apply produces no change event (no relay loops)
    assert remote[0].origin == "a"


def test_remote_update_materializes_only_changed_keys(pair: tuple[Store, Store]) -> None:
    a, b = pair
    ua = _capture(a)
    a.batch([Set("d", f"k{i}", b"v") for i in range(10)])
    b.apply_update("d", ua[0], origin="a")
    seen: list[ChangeEvent] = []
    b.subscribe(seen.append)
    a.set("d", "k3", b"changed")
    b.apply_update("d", ua[1], origin="a")
    assert seen[0].keys == frozenset({"k3"})
    assert b.get("d", "k3") == b"changed"


def test_state_vector_and_diff_send_only_what_is_missing(pair: tuple[Store, Store]) -> None:
    a, b = pair
    a.batch([Set("d", f"k{i}", b"x" * 100) for i in range(100)])
    b.apply_update("d", a.diff("d", b.state_vector("d")), origin="a")
    assert _state(a) == _state(b)
    a.set("d", "new", b"y")
    missing = a.diff("d", b.state_vector("d"))
    assert len(missing) < 100  # only the one new key, not the whole document
    assert b.apply_update("d", missing) is True
    assert a.diff("d", b.state_vector("d")) == b"\x00\x00"
    assert _state(a) == _state(b)


def test_apply_update_can_create_the_document(pair: tuple[Store, Store]) -> None:
    a, b = pair
    a.create_document("fresh")
    a.set("fresh", "k", b"v")
    b.apply_update("fresh", a.diff("fresh"), origin="a", create=True)
    assert b.get("fresh", "k") == b"v"
    assert "fresh" in b.documents()


def test_a_real_yjs_v1_update_is_materialized(pair: tuple[Store, Store]) -> None:
    _, b = pair
    assert b.apply_update("d", YJS_V1_UPDATE) is True
    assert b.get("d", "k") == b"\x01\x02\x03"
    assert b.get("d", "s") == b"str"  # a string from a JS client reads as its UTF-8


@pytest.mark.parametrize("update", [YJS_V2_UPDATE, YJS_V2_EMPTY], ids=["v2", "v2-empty"])
def test_v2_updates_are_refused_not_silently_dropped(
    pair: tuple[Store, Store], update: bytes
) -> None:
    _, b = pair
    b.set("d", "keep", b"me")
    with pytest.raises(UnsupportedUpdateEncodingError, match="v2"):
        b.apply_update("d", update)
    with pytest.raises(UnsupportedUpdateEncodingError):
        b.apply_update("new-doc", update, create=True)
    assert b.get("d", "keep") == b"me"
    assert "new-doc" not in b.documents()


@pytest.mark.parametrize(
    "update",
    [b"", b"\x01", b"\xff\xff\xff\xff", YJS_V1_UPDATE[:-4], b"not a yjs update at all"],
    ids=["empty", "one-byte", "varint-garbage", "truncated", "text"],
)
def test_corrupt_updates_are_refused_and_damage_nothing(
    pair: tuple[Store, Store], update: bytes
) -> None:
    _, b = pair
    b.batch([Set("d", "keep", b"me")])
    b.incr("d", "n", 2)
    info = b.document_info("d")
    with pytest.raises(InvalidUpdateError):
        b.apply_update("d", update)
    with pytest.raises(InvalidUpdateError):
        b.apply_update("created-by-garbage", update, create=True)
    assert b.get("d", "keep") == b"me"
    assert b.document_info("d").log_entries == info.log_entries
    assert "created-by-garbage" not in b.documents()
    assert b.incr("d", "n", 1) == 3  # the CRDT still works after the refusal


def test_empty_v1_update_is_accepted_as_a_no_op(pair: tuple[Store, Store]) -> None:
    _, b = pair
    assert b.apply_update("d", b"\x00\x00") is False


def test_updates_interoperate_with_a_plain_pycrdt_peer(pair: tuple[Store, Store]) -> None:
    a, _ = pair
    peer: Doc[Map[bytes]] = Doc()
    root = peer.get("root", type=Map)
    root["from-peer"] = b"hello"
    a.apply_update("d", peer.get_update(), origin="peer")
    assert a.get("d", "from-peer") == b"hello"
    a.set("d", "from-store", b"hi")
    peer.apply_update(a.diff("d", peer.get_state()))
    assert bytes(root["from-store"]) == b"hi"


def test_out_of_order_updates_wait_durably_for_their_gap(tmp_path: Path) -> None:
    with Store.open(tmp_path / "src") as src:
        src.create_document("d")
        updates = _capture(src)
        for i in range(4):
            src.set("d", f"k{i}", b"v")
    dst_dir = tmp_path / "dst"
    with Store.open(dst_dir) as dst:
        dst.create_document("d")
        assert dst.apply_update("d", updates[3]) is False  # held: it builds on 0..2
        assert dst.apply_update("d", updates[2]) is False
        assert dst.scan("d").items == []
    with Store.open(dst_dir) as dst:  # the held updates survived a restart
        assert dst.apply_update("d", updates[0]) is True
        assert dst.get("d", "k3") is None  # update 1 still missing
        assert dst.apply_update("d", updates[1]) is True
        assert [k for k, _ in dst.scan("d").items] == ["k0", "k1", "k2", "k3"]


def _update_setting(key: str, value: bytes = b"v") -> bytes:
    peer: Doc[Map[bytes]] = Doc()
    peer.get("root", type=Map)[key] = value
    return peer.get_update()


@pytest.mark.parametrize("key", ["", "k" * 600], ids=["empty", "over-lmdb-limit"])
async def test_a_remote_key_this_store_cannot_hold_is_refused_alone(
    pair: tuple[Store, Store], key: str
) -> None:
    # Found in review: an empty key broke scans and the module registry; a key
    # over LMDB's limit failed the whole group commit, other callers included.
    _, b = pair
    results = await asyncio.gather(
        b.abatch([Set("d", "innocent", b"v")]),
        b.aapply_update("d", _update_setting(key)),
        b.abatch([Set("d", "also-innocent", b"v")]),
        return_exceptions=True,
    )
    assert results[0] == [None] and results[2] == [None]
    assert isinstance(results[1], InvalidUpdateError) and "refuses" in str(results[1])
    assert [k for k, _ in b.scan("d").items] == ["also-innocent", "innocent"]
    assert b.apply_update("d", _update_setting("fine")) is True  # the CRDT was rebuilt
    assert b.get("d", "fine") == b"v"


def test_a_gapped_update_of_several_clients_is_held_durably(tmp_path: Path) -> None:
    # Found in review: only the first client block's start was checked, so the part
    # of a multi-client update past a gap lived in pycrdt's memory only.
    a: Doc[Map[bytes]] = Doc(client_id=11)
    b: Doc[Map[bytes]] = Doc(client_id=22)
    ra, rb = a.get("root", type=Map), b.get("root", type=Map)
    first = []
    a.observe(lambda e: first.append(e.update))
    ra["a1"] = b"1"
    ra["a2"] = b"2"
    rb["b1"] = b"3"
    u1, u2 = first
    gapped = merge_updates(u2, b.get_update())  # A's second write + B's: A's first is missing
    dst = tmp_path / "dst"
    with Store.open(dst) as s:
        s.create_document("d")
        s.apply_update("d", gapped)
    with Store.open(dst) as s:  # what pycrdt held in memory must have been kept
        s.apply_update("d", u1)
        assert dict(s.scan("d").items) == {"a1": b"1", "a2": b"2", "b1": b"3"}
        source: Doc[Map[bytes]] = Doc()
        source.apply_update(a.get_update())
        source.apply_update(b.get_update())
        assert s.state_vector("d") == source.get_state()


def test_an_update_with_content_yjs_does_not_have_is_refused_and_the_doc_reloads(
    tmp_path: Path,
) -> None:
    """Found in review: pycrdt acknowledged an item with content ref 18 but logged
    bytes for it that it could not decode again, so the document did not load."""
    odd = bytes([1, 1, 99, 0, 18 | 0x20, 1, 4]) + b"root" + bytes([3]) + b"odd" + bytes(4)
    with Store.open(tmp_path / "s") as store:
        store.create_document("d")
        store.set("d", "k", b"v")
        with pytest.raises(InvalidUpdateError, match="unknown struct content 18"):
            store.apply_update("d", odd)
    with Store.open(tmp_path / "s") as store:
        store.set("d", "k2", b"after")  # loads the CRDT from snapshot + log
        assert store.get("d", "k") == b"v" and store.get("d", "k2") == b"after"
