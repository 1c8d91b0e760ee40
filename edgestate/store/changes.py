"""Change subscription: who hears about which keys changed.

The store calls listeners on its writer thread right after a commit is durable.
An *early* listener hears a remote update (an event with an ``origin``: a peer's,
a Yjs client's) sooner: once the writer has accepted it into the open transaction,
while its commit is being fsynced. Its author still holds it until it is synced,
so if that commit then fails (disk error) or the node crashes before the fsync,
nothing diverges: the author resends it, and whoever saw it keeps it (a CRDT).
Local writes (``origin`` None: module invocations, the HTTP API) reach every
listener only once durable, since their callers are told "stored" and nobody
else holds them. Each listener hears each event once.
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
        self._listeners: tuple[tuple[Listener, bool], ...] = ()

    def subscribe(self, listener: Listener, *, early: bool = False) -> Callable[[], None]:
        """Register ``listener`` (``early``: see the module docstring); returns its unsubscribe."""
        entry = (listener, early)
        with self._lock:
            self._listeners = (*self._listeners, entry)

        def unsubscribe() -> None:
            with self._lock:
                self._listeners = tuple(x for x in self._listeners if x is not entry)

        return unsubscribe

    @property
    def active(self) -> bool:
        """True if anyone listens (lets the writer skip building events)."""
        return bool(self._listeners)

    def publish_accepted(self, events: list[ChangeEvent]) -> None:
        """Before the commit of ``events``: their remote ones, to the early listeners."""
        for listener, early in self._listeners:
            if early:
                self._deliver(listener, [e for e in events if e.origin is not None])

    def publish(self, events: list[ChangeEvent]) -> None:
        """After the commit of ``events``: what each listener has not heard yet."""
        for listener, early in self._listeners:
            self._deliver(listener, [e for e in events if e.origin is None] if early else events)

    @staticmethod
    def _deliver(listener: Listener, events: list[ChangeEvent]) -> None:
        # A failing listener is logged, not fatal.
        for event in events:
            try:
                listener(event)
            except Exception:
                log.exception("change listener %r failed on %s", listener, event.doc)
