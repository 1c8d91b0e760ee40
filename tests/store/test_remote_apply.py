"""The remote apply's shortcuts agree with what they replace.

The gap check reads a state vector kept up to date from each transaction's own
update (``CrdtDocument.clocks``), and materializing reads values off the root
map's events; both must give exactly what decoding the state vector and looking
each key up would, also when pycrdt keeps part of an update pending.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from pycrdt import Doc, Map, TransactionEvent

from edgestate.store import Set, Store, decode_state_vector
from edgestate.store.crdt import CrdtDocument
from edgestate.store.updates import update_blocks


def _apply_walked(crdt: CrdtDocument, update: bytes) -> None:
    """Apply as the store's job does: with the ends its gap check walked."""
    ends: list[int] = []
    blocks = update_blocks(update, ends)
    assert blocks is not None
    crdt.apply_remote(update, [(c, e) for (c, _), e in zip(blocks, ends, strict=True)])


def _recorder(doc: Doc[Any]) -> tuple[list[bytes], Any]:
    out: list[bytes] = []

    def grab(event: TransactionEvent) -> None:
        out.append(bytes(event.update))

    return out, doc.observe(grab)


def _agrees(crdt: CrdtDocument) -> None:
    # A client at clock 0 (pycrdt lists one whose structs it keeps pending) is
    # the same as an absent one to every reader of the clocks.
    decoded = {c: n for c, n in decode_state_vector(crdt.state_vector()).items() if n}
    assert {c: n for c, n in crdt.clocks().items() if n} == decoded
    keys = list(crdt.root.keys())
    assert crdt.materialized(keys) == {k: crdt.value(k) for k in keys}


def test_clocks_follow_remote_local_and_pending_updates() -> None:
    crdt = CrdtDocument("d", 7)
    _agrees(crdt)
    # Local writes (a write plan) between remote updates.
    plan = crdt.plan()
    plan.add([Set("d", "local", b"1")])
    plan.execute()
    _agrees(crdt)
    a: Doc[Any] = Doc(client_id=100)
    b: Doc[Any] = Doc(client_id=200)
    a_updates, _sa = _recorder(a)
    a.get("root", type=Map)["x"] = "text"
    # B writes over A's entry: its item's origin is A's, so without A's update
    # pycrdt keeps B's pending and the state vector does not move for B.
    b.apply_update(a_updates[0])
    b_updates, _sb = _recorder(b)
    b.get("root", type=Map)["x"] = b"from b"
    b.get("root", type=Map)["y"] = b"long " * 100  # past the one-byte length fast path
    for update in b_updates:
        _apply_walked(crdt, update)  # pending in pycrdt: its ends must not count
        _agrees(crdt)
    assert 200 not in crdt.clocks()  # held by pycrdt, so not counted
    crdt.apply_remote(a_updates[0])  # fills the gap: B's pending structs land too
    _agrees(crdt)
    assert crdt.clocks()[200] == decode_state_vector(b.get_state())[200]
    assert crdt.value("y") is not None


def test_clocks_and_values_agree_over_a_random_mix() -> None:
    rng = random.Random(5)
    crdt = CrdtDocument("d", 1)
    clients = [Doc(client_id=10 + i) for i in range(4)]
    records = [_recorder(c) for c in clients]
    for step in range(300):
        i = rng.randrange(len(clients))
        root = clients[i].get("root", type=Map)
        key = f"k{rng.randrange(20)}"
        if rng.random() < 0.2 and key in root:
            del root[key]
        elif rng.random() < 0.2:
            root[key] = Map({"nested": step})  # a foreign value: looked up, not cached
        else:
            root[key] = rng.choice([b"bytes %d" % step, f"text {step}"])
        for update in records[i][0][-1:]:
            if rng.random() < 0.5:
                _apply_walked(crdt, update)
            else:
                crdt.apply_remote(update)
            # Replicas exchange now and then, so origins cross clients.
            if rng.random() < 0.3:
                j = rng.randrange(len(clients))
                clients[j].apply_update(clients[i].get_update(clients[j].get_state()))
        if rng.random() < 0.1:  # a local group write in between
            plan = crdt.plan()
            plan.add([Set("d", f"k{rng.randrange(20)}", b"local")])
            plan.execute()
        _agrees(crdt)


def test_a_store_applies_many_clients_updates_as_before(tmp_path: Path) -> None:
    # The whole path: every client's update applied through the store matches a
    # plain pycrdt doc that applied the same updates.
    with Store.open(tmp_path / "data") as store:
        store.create_document("d")
        plain: Doc[Any] = Doc()
        plain_root = plain.get("root", type=Map)
        for n in range(60):
            client: Doc[Any] = Doc(client_id=1000 + n)
            client.apply_update(store.diff("d", None))
            updates, _sub = _recorder(client)
            client.get("root", type=Map)[f"key{n % 7}"] = f"client {n}"
            for update in updates:
                assert store.apply_update("d", update, origin="yjs:test")
                plain.apply_update(update)
        for key in plain_root.keys():
            assert store.get("d", key) == str(plain_root[key]).encode()
        sv = decode_state_vector(store.state_vector("d"))
        assert {c: sv[c] for c in decode_state_vector(plain.get_state())} == decode_state_vector(
            plain.get_state()
        )


async def test_a_groups_events_reach_a_stream_in_one_wakeup_in_order(tmp_path: Path) -> None:
    import asyncio

    with Store.open(tmp_path / "data") as store:
        names = [f"doc{i:02d}" for i in range(20)]
        for name in names:
            store.create_document(name)
        stream = store.changes(early=True)
        loop = asyncio.get_running_loop()
        wakeups = 0
        original = loop.call_soon_threadsafe

        def counted(callback: Any, *args: Any) -> Any:
            nonlocal wakeups
            if getattr(callback, "__self__", None) is stream:
                wakeups += 1
            return original(callback, *args)

        loop.call_soon_threadsafe = counted  # type: ignore[method-assign]
        try:
            # One job writing 20 documents: one group, 20 events.
            await store.abatch([Set(name, "k", b"v") for name in names])
            got = []
            async with asyncio.timeout(10):
                while len(got) < len(names):
                    event = await stream.get()
                    assert event is not None
                    got.append(event.doc)
        finally:
            loop.call_soon_threadsafe = original  # type: ignore[method-assign]
            stream.close()
        assert got == names
        assert wakeups == 1  # one per commit, not one per event (20 before)


def test_the_walk_reads_long_client_ids_and_refuses_every_truncation() -> None:
    from edgestate.errors import InvalidUpdateError

    big = Doc(client_id=(1 << 53) - 3)  # an 8-byte varint, as replica ids are
    big.get("root", type=Map)["k"] = b"v" * 200
    other = Doc(client_id=5)
    other.apply_update(big.get_update())
    updates, _sub = _recorder(other)
    other.get("root", type=Map)["k"] = "over it"  # origin: the big client's item
    update = updates[0]
    ends: list[int] = []
    assert update_blocks(update, ends) == [(5, 0)]
    assert ends == [decode_state_vector(other.get_state())[5]]
    assert update_blocks(big.get_update()) == [((1 << 53) - 3, 0)]
    from edgestate.store.codec import walk

    structs_end = walk(update)[1]  # the delete set after it is pycrdt's to check
    for cut in range(structs_end):
        try:
            assert update_blocks(update[:cut]) is None
        except InvalidUpdateError:
            pass  # a cut can look like another struct's content: refused by name
