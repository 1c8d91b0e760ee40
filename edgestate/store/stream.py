"""The asyncio side of change subscription: a bounded queue between the writer
thread and an event loop.

When a consumer falls behind and the queue fills, the stream drops what it
holds and raises its ``overflowed`` flag instead of growing without bound; the
consumer then resynchronizes from state (the sync daemon does so from state
vectors). Its own module so a store that never streams never imports asyncio.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Collection

from edgestate.store.changes import ChangeHub
from edgestate.store.types import ChangeEvent


class ChangeStream:
    """Async iterator over change events with a bounded buffer.

    Create it from inside a running event loop (``store.changes()``); close it
    when done so the store stops feeding it.
    """

    def __init__(
        self,
        hub: ChangeHub,
        maxsize: int = 10_000,
        *,
        early: bool = False,
        docs: Collection[str] | None = None,
        keep: Callable[[ChangeEvent], bool] | None = None,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        # Filtered on the writer thread: a follower of one system document is not
        # woken by every group commit of the others (at 64 clients, 400-500 a second).
        self._keep = keep if docs is None else _of_docs(frozenset(docs), keep)
        self._queue: asyncio.Queue[ChangeEvent | None] = asyncio.Queue(maxsize)
        self.overflowed = False
        self.dropped = 0
        self._closed = False
        # Events from the writer thread not yet on the loop, taken a commit at a
        # time: one loop wakeup per commit, not per event (a thread-safe wakeup
        # costs ~30 us, and a burst's commit holds hundreds of events; the
        # wakeup's self-pipe write also hands the GIL to the loop, which then
        # drained one event per wakeup when they came one by one).
        self._arrived: list[ChangeEvent] = []
        self._arrived_lock = threading.Lock()
        self._drain_due = False
        self._lost = 0  # dropped before reaching the loop (it fell this far behind)
        self._unsubscribe = hub.subscribe_batches(self._from_writer, early=early)

    def _from_writer(self, events: list[ChangeEvent]) -> None:
        if self._closed:
            return
        keep = self._keep
        if keep is not None:
            events = [e for e in events if keep(e)]
            if not events:
                return
        with self._arrived_lock:
            arrived = self._arrived
            arrived.extend(events)
            if len(arrived) > self._queue.maxsize > 0:
                # Bounded here too, as the queue is: the loop is this far behind.
                excess = len(arrived) - self._queue.maxsize
                self._lost += excess
                del arrived[:excess]
            if self._drain_due:
                return  # the drain already due takes these too
            self._drain_due = True
        try:
            self._loop.call_soon_threadsafe(self._drain)
        except RuntimeError:  # loop already closed: nobody is listening any more
            self._closed = True

    def _drain(self) -> None:
        with self._arrived_lock:
            events, self._arrived = self._arrived, []
            lost, self._lost = self._lost, 0
            self._drain_due = False
        if lost:
            self.dropped += lost
            self.overflowed = True
        for event in events:
            self._put(event)

    def _put(self, event: ChangeEvent) -> None:
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            self.dropped += self._queue.qsize()
            while not self._queue.empty():
                self._queue.get_nowait()
            self.overflowed = True
            # Keep the newest event: it wakes a waiting consumer, which then sees
            # the flag (otherwise a quiet document could stay stale indefinitely).
            self._queue.put_nowait(event)

    def reset_overflow(self) -> bool:
        """Return and clear the overflow flag (call it, then resync from state)."""
        was, self.overflowed = self.overflowed, False
        return was

    def close(self) -> None:
        """Stop receiving events and end iteration."""
        if not self._closed:
            self._closed = True
            self._unsubscribe()
            try:
                self._loop.call_soon_threadsafe(self._end)
            except RuntimeError:  # loop closed: no iterator left to wake
                pass

    def _end(self) -> None:
        if self._queue.full():
            self._queue.get_nowait()  # make room for the end marker
        self._queue.put_nowait(None)

    def get_nowait(self) -> ChangeEvent | None:
        """The next buffered event, or None if none is waiting."""
        try:
            return self._queue.get_nowait()
        except asyncio.QueueEmpty:
            return None

    async def get(self) -> ChangeEvent | None:
        """Wait for the next event; None once the stream is closed."""
        return await self._queue.get()

    async def __aiter__(self) -> AsyncIterator[ChangeEvent]:
        while True:
            event = await self._queue.get()
            if event is None:
                return
            yield event


def _of_docs(
    docs: frozenset[str], keep: Callable[[ChangeEvent], bool] | None
) -> Callable[[ChangeEvent], bool]:
    if keep is None:
        return lambda event: event.doc in docs
    return lambda event: event.doc in docs and keep(event)
