"""``Store.changes(docs=..., keep=...)``: a stream that follows some documents, or
some events, is fed only those (filtered on the writer thread, so others' commits
never wake it)."""

from __future__ import annotations

import asyncio
import threading

from edgestate.store import ChangeEvent, Set, Store


async def test_a_filtered_stream_gets_only_its_documents_events(store: Store) -> None:
    only = store.changes(docs=("counters",))
    every = store.changes()
    try:
        for i in range(20):
            await store.abatch([Set("docs", f"k{i}", b"v")])
        await store.abatch([Set("counters", "c", b"1")])
        await store.abatch([Set("docs", "last", b"v")])
        event = await asyncio.wait_for(only.get(), 10)
        assert event is not None and event.doc == "counters" and event.keys == {"c"}
        seen = []
        while len(seen) < 22:
            got = await asyncio.wait_for(every.get(), 10)
            assert got is not None
            seen.append(got.doc)
        assert seen.count("counters") == 1 and seen[-1] == "docs"
        # Everything the unfiltered stream saw has been delivered: nothing else
        # waits for the filtered one (its queue was never fed the others).
        await asyncio.sleep(0)
        assert only.get_nowait() is None
        assert not only.overflowed
    finally:
        only.close()
        every.close()


async def test_keep_filters_on_the_writer_thread(store: Store) -> None:
    threads: set[int] = set()

    def keep(event: ChangeEvent) -> bool:
        threads.add(threading.get_ident())
        return "keep" in event.keys

    kept = store.changes(keep=keep)
    try:
        for i in range(10):
            await store.abatch([Set("docs", f"drop{i}", b"v")])
        await store.abatch([Set("docs", "keep", b"v")])
        event = await asyncio.wait_for(kept.get(), 10)
        assert event is not None and event.keys == {"keep"}
        await asyncio.sleep(0)
        assert kept.get_nowait() is None  # the ten dropped never reached the loop
        assert threads and threading.get_ident() not in threads
    finally:
        kept.close()
