"""Remote updates announced at submission (edgestate.store.announce).

Real LMDB, real pycrdt. The writer thread is held (an early listener that waits
on a gate) so "before the writer took it" is an order of events, not a race.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgestate.errors import StoreClosedError
from edgestate.store import ChangeEvent, Durability, GcMode, Set, Store, StoreConfig
from edgestate.store.announce import MAX_ANNOUNCED_BYTES
from tests.store.writer_hold import WAIT_S, one_key_update, writer_held

Heard = list[tuple[str, bytes, str]]
_update = one_key_update


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = Store.open(tmp_path / "data", StoreConfig())
    store.create_document("d")
    yield store
    store.close()


async def test_an_update_is_announced_in_the_submitters_turn_before_the_writer_takes_it(
    store: Store,
) -> None:
    heard: Heard = []
    events: list[ChangeEvent] = []
    store.subscribe_submitted(lambda doc, update, origin: heard.append((doc, update, origin)))
    store.subscribe(events.append, early=True)
    update = _update("k", b"1")
    async with writer_held(store):
        applied = store.submit_update("d", update, origin="yjs:1")
        assert heard[-1] == ("d", update, "yjs:1")  # before submit_update returned
        await asyncio.sleep(0.05)
        assert not applied.done() and store.get("d", "k") is None  # the writer has not
    assert await asyncio.wait_for(applied, WAIT_S) is True
    assert store.get("d", "k") == b"1"
    (event,) = [e for e in events if e.doc == "d"]
    assert event.announced and event.origin == "yjs:1"


@pytest.mark.parametrize(
    "why, update",
    [
        ("truncated", _update("k")[:-3]),
        ("empty key", _update("")),
        ("key over max_key_bytes", _update("k" * 401)),
        ("v2 encoding", b"\x00" + _update("k")[1:]),
        ("too big to walk on the loop", _update("k", b"x" * MAX_ANNOUNCED_BYTES)),
    ],
    ids=lambda value: value if isinstance(value, str) else "",  # bytes differ per process
)
async def test_what_needs_the_writer_to_judge_is_not_announced(
    store: Store, why: str, update: bytes
) -> None:
    heard: Heard = []
    events: list[ChangeEvent] = []
    store.subscribe_submitted(lambda doc, u, origin: heard.append((doc, u, origin)))
    store.subscribe(events.append, early=True)
    outcome = await asyncio.gather(
        store.submit_update("d", update, origin="yjs:1"), return_exceptions=True
    )
    assert heard == [], why
    assert all(not e.announced for e in events), why
    if why == "too big to walk on the loop":
        assert outcome == [True] and store.get("d", "k") is not None  # taken the old way


async def test_a_document_with_collected_history_is_not_announced(tmp_path: Path) -> None:
    config = StoreConfig(gc=GcMode.SOLO, durability=Durability.BATCHED, compact_min_log_bytes=4096)
    with Store.open(tmp_path / "s", config) as store:
        store.create_document("d")
        for r in range(30):
            store.batch([Set("d", f"k{k}", f"v{r}".encode()) for k in range(20)])
        store.compact("d")
        store.compact("d")
        assert store.gc_status("d").collected_items > 0
        heard: Heard = []
        store.subscribe_submitted(lambda doc, u, origin: heard.append((doc, u, origin)))
        assert await store.submit_update("d", _update("new"), origin="yjs:1") is True
        assert heard == []


async def test_local_writes_are_never_announced(store: Store) -> None:
    heard: Heard = []
    events: list[ChangeEvent] = []
    committed = threading.Event()

    def on_commit(event: ChangeEvent) -> None:
        events.append(event)
        committed.set()  # listeners hear a commit on the writer thread, after it lands

    store.subscribe_submitted(lambda doc, u, origin: heard.append((doc, u, origin)))
    store.subscribe(on_commit)
    await store.abatch([Set("d", "k", b"1")])
    assert await asyncio.to_thread(committed.wait, WAIT_S)
    assert heard == [] and [e.announced for e in events] == [False]


async def test_the_writer_sees_submissions_in_order_announced_or_not(store: Store) -> None:
    events: list[ChangeEvent] = []
    store.subscribe(events.append, early=True)
    store.subscribe_submitted(lambda doc, u, origin: None)  # announcing only while heard
    first, second, third = (
        _update("a", client=1),
        _update("b", b"x" * MAX_ANNOUNCED_BYTES, client=2),  # not announced
        _update("c", client=3),
    )
    async with writer_held(store):
        pending = [
            store.submit_update("d", u, origin=f"peer:{i}")
            for i, u in enumerate((first, second, third))
        ]
    await asyncio.wait_for(asyncio.gather(*pending), WAIT_S)
    got = [(e.origin, e.announced) for e in events if e.doc == "d"]
    assert got == [("peer:0", True), ("peer:1", False), ("peer:2", True)]


async def test_an_announced_update_fails_cleanly_if_the_store_closes_in_its_turn(
    tmp_path: Path,
) -> None:
    store = Store.open(tmp_path / "data", StoreConfig())
    store.create_document("d")
    heard: Heard = []
    store.subscribe_submitted(lambda doc, u, origin: heard.append((doc, u, origin)))
    applied = store.submit_update("d", _update("k"), origin="yjs:1")
    store.close()  # before the loop's turn hands the job to the writer
    assert len(heard) == 1
    with pytest.raises(StoreClosedError):
        await asyncio.wait_for(applied, WAIT_S)


async def test_a_failing_submit_listener_is_logged_and_the_update_still_applies(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(doc: str, update: bytes, origin: str) -> None:
        raise RuntimeError("listener bug")

    store.subscribe_submitted(broken)
    assert await store.submit_update("d", _update("k"), origin="yjs:1") is True
    assert store.get("d", "k") == b"v"
    assert "submit listener" in caplog.text


async def test_the_writer_keeps_the_clocks_from_the_announce_walk(store: Store) -> None:
    # The writer takes an announced update's blocks from its announce walk
    # instead of walking it again: the clocks it keeps from them must still say
    # what the store holds, or a later update of the same client would be held
    # back as if it had a gap.
    from pycrdt import Doc, Map

    store.subscribe_submitted(lambda doc, update, origin: None)  # announcing on
    author = Doc()
    root = author.get("root", type=Map)
    for i in range(30):
        before = author.get_state()
        root[f"k{i}"] = f"v{i}"
        update = author.get_update(before)
        assert await asyncio.wait_for(store.submit_update("d", update, origin="yjs:1"), WAIT_S), (
            f"update {i} was held or changed nothing"
        )
    replica = Doc()
    replica.apply_update(store.diff("d", None))
    assert replica.get("root", type=Map).to_py() == root.to_py()
    assert store.state_vector("d") == author.get_state()
