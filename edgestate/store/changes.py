"""Change subscription: who hears about which keys changed.

The store calls listeners on its writer thread right after a commit is durable.
:class:`ChangeStream` is the asyncio side: a bounded queue between that thread
and the event loop. When a consumer falls behind and the queue fills, the stream
drops what it holds and raises its ``overflowed`` flag instead of growing without
bound; the consumer then resynchronizes from state (the sync daemon does so from
state vectors).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Callable

from edgestate.store.types import ChangeEvent

log = logging.getLogger(__name__)

Listener = Callable[[ChangeEvent], None]


class ChangeHub:
    """Thread-safe list of listeners, called in registration order."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._listeners: tuple[Listener, ...] = ()

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Register ``listener``; returns a function that unregisters it."""
        with self._lock:
            self._listeners = (*self._listeners, listener)

        def unsubscribe() -> None:
            with self._lock:
                self._listeners = tuple(x for x in self._listeners if x is not listener)

        return unsubscribe

    @property
    def active(self) -> bool:
        """True if anyone listens (lets the writer skip building events)."""
        return bool(self._listeners)

    def publish(self, events: list[ChangeEvent]) -> None:
        """Deliver ``events`` to every listener; a failing listener is logged, not fatal."""
        for listener in self._listeners:
            for event in events:
                try:
                    listener(event)
                except Exception:
                    log.exception("change listener %r failed on %s", listener, event.doc)


class ChangeStream:
    """Async iterator over change events with a bounded buffer.

    Create it from inside a running event loop (``store.changes()``); close it
    when done so the store stops feeding it.
    """

    def __init__(self, hub: ChangeHub, maxsize: int = 10_000) -> None:
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[ChangeEvent | None] = asyncio.Queue(maxsize)
        self.overflowed = False
        self.dropped = 0
        self._closed = False
        self._unsubscribe = hub.subscribe(self._from_writer)

    def _from_writer(self, event: ChangeEvent) -> None:
        if not self._closed:
            try:
                self._loop.call_soon_threadsafe(self._put, event)
            except RuntimeError:  # loop already closed: nobody is listening any more
                self._closed = True

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
