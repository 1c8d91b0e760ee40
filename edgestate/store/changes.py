"""Change subscription: who hears about which keys changed.

The store calls listeners on its writer thread right after a commit is durable.
:class:`edgestate.store.stream.ChangeStream` is the asyncio side.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

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
