"""Every store operation against a real LMDB environment."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from edgestate.errors import (
    InvalidCursorError,
    InvalidDocumentNameError,
    InvalidKeyError,
    StoreClosedError,
    UnknownDocumentError,
    ValueTooLargeError,
    WrongTypeError,
)
from edgestate.store import ChangeEvent, Delete, Durability, Incr, Set, Store, StoreConfig


def test_set_get_delete_round_trip(store: Store) -> None:
    assert store.get("docs", "a") is None
    store.set("docs", "a", b"\x00binary\xff")
    assert store.get("docs", "a") == b"\x00binary\xff"
    store.set("docs", "a", b"second")
    assert store.get("docs", "a") == b"second"
    store.delete("docs", "a")
    assert store.get("docs", "a") is None
    store.delete("docs", "a")  # deleting an absent key is a no-op


def test_unicode_keys_and_empty_values(store: Store) -> None:
    store.set("docs", "clé/ü/🙂", b"")
    assert store.get("docs", "clé/ü/🙂") == b""
    assert [k for k, _ in store.scan("docs").items] == ["clé/ü/🙂"]


def test_incr_counts_and_goes_negative(store: Store) -> None:
    assert store.incr("counters", "n") == 1
    assert store.incr("counters", "n", 41) == 42
    assert store.incr("counters", "n", -50) == -8
    assert store.get_counter("counters", "n") == -8
    assert store.get("counters", "n") == (-8).to_bytes(8, "little", signed=True)
    assert store.lookup("counters", "n") == ((-8).to_bytes(8, "little", signed=True), True)
    store.set("counters", "plain", b"p")
    assert store.lookup("counters", "plain") == (b"p", False)
    assert store.lookup("counters", "absent") == (None, False)
    page = store.scan("counters")
    assert page.counters == frozenset({"n"})


def test_incr_on_plain_value_is_refused(store: Store) -> None:
    store.set("docs", "plain", b"x")
    with pytest.raises(WrongTypeError, match="plain value"):
        store.incr("docs", "plain")
    assert store.get("docs", "plain") == b"x"


def test_set_replaces_a_counter(store: Store) -> None:
    store.incr("counters", "n", 3)
    store.set("counters", "n", b"now bytes")
    assert store.get("counters", "n") == b"now bytes"
    assert store.incr("counters", "m", 2) == 2


def test_counter_overflow_is_refused_without_trace(store: Store) -> None:
    store.incr("counters", "big", (1 << 63) - 1)
    with pytest.raises(ValueTooLargeError, match="overflow"):
        store.incr("counters", "big", 1)
    assert store.get_counter("counters", "big") == (1 << 63) - 1


def test_batch_is_atomic_across_documents(store: Store) -> None:
    results = store.batch(
        [
            Set("docs", "a", b"1"),
            Incr("counters", "n", 5),
            Set("docs", "b", b"2"),
            Incr("counters", "n", 2),
        ]
    )
    assert results == [None, 5, None, 7]
    store.set("docs", "plain", b"p")
    with pytest.raises(WrongTypeError):
        store.batch([Set("docs", "c", b"3"), Incr("counters", "n", 1), Incr("docs", "plain", 1)])
    # nothing of the refused batch is visible, in the table or in the CRDT
    assert store.get("docs", "c") is None
    assert store.get_counter("counters", "n") == 7
    assert store.incr("counters", "n", 1) == 8
    assert store.get("docs", "c") is None


def test_batch_sees_its_own_earlier_ops(store: Store) -> None:
    store.set("docs", "k", b"plain")
    assert store.batch([Delete("docs", "k"), Incr("docs", "k", 4)]) == [None, 4]
    with pytest.raises(WrongTypeError):
        store.batch([Set("docs", "k2", b"x"), Incr("docs", "k2", 1)])
    assert store.get("docs", "k2") is None


def test_scan_is_ordered_paginated_and_prefix_bounded(store: Store) -> None:
    keys = [f"user:{i:04d}" for i in range(250)]
    store.batch([Set("docs", k, k.encode()) for k in reversed(keys)])
    store.batch([Set("docs", "usen", b"before"), Set("docs", "user;", b"after")])
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        page = store.scan("docs", "user:", cursor, limit=100)
        seen.extend(k for k, _ in page.items)
        assert all(v == k.encode() for k, v in page.items)
        pages += 1
        if page.cursor is None:
            break
        cursor = page.cursor
    assert seen == keys
    assert pages == 3
    assert store.scan("docs", "nope").items == []
    exact = store.scan("docs", "", limit=2)
    assert exact.cursor is not None and len(exact.items) == 2


def test_scan_page_boundary_has_no_empty_last_page(store: Store) -> None:
    store.batch([Set("docs", f"k{i}", b"") for i in range(10)])
    page = store.scan("docs", "k", limit=10)
    assert len(page.items) == 10 and page.cursor is None


def test_foreign_or_mangled_cursor_is_refused(store: Store) -> None:
    store.batch([Set("docs", f"a{i}", b"") for i in range(5)])
    store.batch([Set("counters", f"a{i}", b"") for i in range(5)])
    cursor = store.scan("docs", "a", limit=2).cursor
    assert cursor is not None
    with pytest.raises(InvalidCursorError, match="belongs to a scan"):
        store.scan("counters", "a", cursor)
    with pytest.raises(InvalidCursorError, match="belongs to a scan"):
        store.scan("docs", "b", cursor)
    with pytest.raises(InvalidCursorError, match="not one this store issued"):
        store.scan("docs", "a", "!!garbage!!")


@pytest.mark.parametrize(
    ("key", "message"),
    [
        (b"bytes", "keys are strings"),
        ("", "must not be empty"),
        ("x" * 401, "over the limit"),
        ("\ud800", "not valid UTF-8"),
        (7, "keys are strings"),
    ],
)
def test_bad_keys_are_refused(store: Store, key: object, message: str) -> None:
    with pytest.raises(InvalidKeyError, match=message):
        store.set("docs", key, b"v")  # type: ignore[arg-type]
    with pytest.raises(InvalidKeyError):
        store.get("docs", key)  # type: ignore[arg-type]


def test_value_over_limit_is_refused(store_dir: Path) -> None:
    with Store.open(store_dir, StoreConfig(max_value_bytes=10)) as s:
        s.create_document("d")
        s.set("d", "ok", b"x" * 10)
        with pytest.raises(ValueTooLargeError, match="11 bytes, over the limit of 10"):
            s.set("d", "big", b"x" * 11)
        with pytest.raises(ValueTooLargeError, match="values are bytes"):
            s.set("d", "str", "text")  # type: ignore[arg-type]
        assert s.get("d", "ok") == b"x" * 10


def test_unknown_and_invalid_document_names(store: Store) -> None:
    with pytest.raises(UnknownDocumentError, match="create it first"):
        store.set("missing", "k", b"v")
    with pytest.raises(UnknownDocumentError):
        store.get("missing", "k")
    with pytest.raises(InvalidDocumentNameError):
        store.create_document("bad/name")
    with pytest.raises(InvalidDocumentNameError):
        store.get("a\x00b", "k")
    assert store.documents() == ["counters", "docs"]


def test_document_info_tracks_keys_and_log(store: Store) -> None:
    store.batch([Set("docs", f"k{i}", b"abc") for i in range(10)])
    store.delete("docs", "k0")
    info = store.document_info("docs")
    assert info.keys == 9
    assert info.value_bytes == 27
    assert info.log_entries == 2
    assert info.log_bytes > 0


def test_concurrent_writers_share_commits(store: Store) -> None:
    def writer(t: int) -> None:
        for i in range(100):
            store.set("docs", f"t{t}-{i}", b"v")
            store.incr("counters", "total")

    threads = [threading.Thread(target=writer, args=(t,), daemon=True) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert store.get_counter("counters", "total") == 800
    assert store.document_info("docs").keys == 800
    # group commit gathered concurrent writes: fewer commits than writes
    assert store.stats()["commits"] < 1600


async def test_async_writers_and_change_stream(store: Store) -> None:
    stream = store.changes()
    await asyncio.gather(*(store.abatch([Set("docs", f"k{i}", b"v")]) for i in range(50)))
    keys: set[str] = set()
    while len(keys) < 50:
        event = await asyncio.wait_for(stream.get(), 5)
        assert event is not None and event.doc == "docs" and event.origin is None
        keys |= event.keys
    stream.close()
    assert await asyncio.wait_for(stream.get(), 5) is None


async def test_change_stream_overflow_is_flagged_not_unbounded(store: Store) -> None:
    stream = store.changes(maxsize=5)
    for i in range(20):
        await store.abatch([Set("docs", f"k{i}", b"v")])
    await asyncio.sleep(0)  # let the loop run the thread-safe callbacks
    for _ in range(100):
        if stream.overflowed:
            break
        await asyncio.sleep(0.01)
    assert stream.reset_overflow() is True
    assert stream.dropped > 0
    stream.close()


def test_subscribe_reports_keys_and_unsubscribe_stops(store: Store) -> None:
    events: list[ChangeEvent] = []
    unsubscribe = store.subscribe(events.append)
    store.batch([Set("docs", "a", b"1"), Incr("counters", "c", 1)])
    assert {(e.doc, e.keys) for e in events} == {
        ("docs", frozenset({"a"})),
        ("counters", frozenset({"c"})),
    }
    unsubscribe()
    store.set("docs", "b", b"2")
    assert len(events) == 2


def test_failing_listener_does_not_break_writes(store: Store) -> None:
    def broken(event: ChangeEvent) -> None:
        raise RuntimeError("listener bug")

    store.subscribe(broken)
    store.set("docs", "a", b"1")
    assert store.get("docs", "a") == b"1"


def _read_in_subprocess(path: Path, code: str) -> str:
    # py-lmdb allows one open of an environment per process, so a second reader
    # beside a writer is, as in production, another process.
    script = (
        "import sys\nfrom edgestate.store import Store\n"
        f"s = Store.open({str(path)!r}, readonly=True)\n" + code
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_readonly_store_reads_beside_writer_and_refuses_writes(store: Store) -> None:
    store.set("docs", "a", b"1")
    assert _read_in_subprocess(store.path, "print(s.get('docs', 'a'))") == "b'1'"
    store.set("docs", "a", b"2")
    out = _read_in_subprocess(
        store.path,
        "print(s.get('docs', 'a'))\n"
        "try:\n    s.set('docs', 'a', b'x')\nexcept Exception as e:\n    print(type(e).__name__)",
    )
    assert out.splitlines() == ["b'2'", "ReadOnlyStoreError"]
    assert store.get("docs", "a") == b"2"


def test_closed_store_refuses_everything(store_dir: Path) -> None:
    s = Store.open(store_dir)
    s.create_document("d")
    s.close()
    s.close()
    with pytest.raises(StoreClosedError):
        s.set("d", "k", b"v")
    with pytest.raises(StoreClosedError):
        s.documents()


def test_idle_document_is_evicted_and_reloaded(store_dir: Path) -> None:
    with Store.open(store_dir, StoreConfig(idle_evict_s=0.05)) as s:
        s.create_document("d")
        s.incr("d", "n", 2)
        s.set("d", "k", b"v")
        deadline = 200
        while "d" in s.loaded_documents() and deadline:
            threading.Event().wait(0.02)
            deadline -= 1
        assert "d" not in s.loaded_documents(), "idle document was not evicted"
        assert s.get("d", "k") == b"v"  # reads never need the CRDT
        assert "d" not in s.loaded_documents()
        assert s.incr("d", "n", 3) == 5  # a write reloads it from snapshot + log


def test_reopen_restores_state(store_dir: Path) -> None:
    with Store.open(store_dir) as s:
        s.create_document("d")
        s.batch([Set("d", "a", b"1"), Incr("d", "n", 9)])
        replica = s.replica_id
    with Store.open(store_dir) as s:
        assert s.get("d", "a") == b"1"
        assert s.incr("d", "n", 1) == 10
        assert s.replica_id == replica


def test_big_documents_stay_loaded_when_idle(store_dir: Path) -> None:
    with Store.open(store_dir, StoreConfig(idle_evict_s=0.05, evict_max_keys=5)) as s:
        s.create_document("small")
        s.create_document("big")
        s.set("small", "k", b"v")
        s.batch([Set("big", f"k{i}", b"v") for i in range(10)])
        deadline = 200
        while "small" in s.loaded_documents() and deadline:
            threading.Event().wait(0.02)
            deadline -= 1
        assert "small" not in s.loaded_documents()
        assert "big" in s.loaded_documents()  # reloading it would stall every writer


def test_a_big_document_loads_off_the_writer_thread(store_dir: Path) -> None:
    config = StoreConfig(evict_max_keys=100, durability=Durability.BATCHED)
    with Store.open(store_dir, config) as s:
        s.create_document("big")
        s.create_document("small")
        for start in range(0, 30_000, 5000):
            s.batch([Set("big", f"k{i}", b"v") for i in range(start, start + 5000)])
        s.incr("big", "n", 1)
    with Store.open(store_dir, config) as s:  # reopened: nothing loaded
        assert s.loaded_documents() == []
        big_first = s.submit([Incr("big", "n", 1)])
        big_second = s.submit([Incr("big", "n", 10)])
        small = s.submit([Set("small", "k", b"v")])
        small.result(timeout=30)
        assert not big_first.done(), "the small write waited for the big document's load"
        assert big_first.result(timeout=60) == [2]
        assert big_second.result(timeout=60) == [12]  # order kept behind the load
        assert s.loaded_documents() == ["big", "small"]
        assert s.get("big", "k29999") == b"v"


def test_close_waits_for_jobs_queued_behind_a_load(store_dir: Path) -> None:
    config = StoreConfig(evict_max_keys=100, durability=Durability.BATCHED)
    with Store.open(store_dir, config) as s:
        s.create_document("big")
        for start in range(0, 20_000, 5000):
            s.batch([Set("big", f"k{i}", b"v") for i in range(start, start + 5000)])
    s = Store.open(store_dir, config)
    pending = s.submit([Set("big", "late", b"written")])
    s.close()
    assert pending.result(timeout=1) == [None]
    with Store.open(store_dir, config, readonly=True) as ro:
        assert ro.get("big", "late") == b"written"
