"""Change subscription: who hears about which keys changed.

The store calls listeners on its writer thread right after a commit is durable.
An *early* listener hears a remote update (an event with an ``origin``: a peer's,
a Yjs client's) sooner: once the writer has accepted it into the open transaction,
while its commit is being fsynced. Its author still holds it until it is synced,
so if that commit then fails (disk error) or the node crashes before the fsync,
nothing diverges: the author resends it, and whoever saw it keeps it (a CRDT).
Local writes (``origin`` None: module invocations, the HTTP API) reach every
listener only once durable, since their callers are told "stored" and nobody
else holds them. Each listener hears each event once. A *submit* listener hears
some remote updates sooner still, when they are submitted
(:mod:`edgestate.store.announce`).
:class:`edgestate.store.stream.ChangeStream` is the asyncio side.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable

from edgestate.store.announce import SubmitListener
from edgestate.store.types import ChangeEvent

log = logging.getLogger(__name__)

Listener = Callable[[ChangeEvent], None]
# Called once per commit with all of its events (see ChangeHub.subscribe).
BatchListener = Callable[[list[ChangeEvent]], None]


class ChangeHub:
    """Thread-safe list of listeners, called in registration order."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # (what takes a commit's events, early?) per listener.
        self._listeners: tuple[tuple[BatchListener, bool], ...] = ()
        self._submitted: tuple[SubmitListener, ...] = ()

    def subscribe(self, listener: Listener, *, early: bool = False) -> Callable[[], None]:
        """Register ``listener`` (``early``: see the module docstring); returns its unsubscribe."""
        return self._add(functools.partial(_each, listener), early)

    def subscribe_batches(
        self, listener: BatchListener, *, early: bool = False
    ) -> Callable[[], None]:
        """Like :meth:`subscribe`, but ``listener`` takes all of a commit's events
        at once (not called for none): one hop to another thread per commit."""
        return self._add(functools.partial(_batch, listener), early)

    def _add(self, deliver: BatchListener, early: bool) -> Callable[[], None]:
        return self._register("_listeners", (deliver, early))

    def subscribe_submitted(self, listener: SubmitListener) -> Callable[[], None]:
        """Register a submit listener (:mod:`edgestate.store.announce`); returns its
        unsubscribe."""
        return self._register("_submitted", listener)

    def _register(self, table: str, entry: object) -> Callable[[], None]:
        # Each table is a tuple replaced whole under the lock, so the publishing
        # thread iterates a snapshot without taking the lock.
        with self._lock:
            setattr(self, table, (*getattr(self, table), entry))

        def unsubscribe() -> None:
            with self._lock:
                setattr(self, table, tuple(x for x in getattr(self, table) if x is not entry))

        return unsubscribe

    @property
    def announcing(self) -> bool:
        """True if anyone hears updates at submission."""
        return bool(self._submitted)

    def publish_submitted(self, doc: str, update: bytes, origin: str) -> None:
        """On the submitting thread: an announceable update, to the submit listeners."""
        for listener in self._submitted:
            try:
                listener(doc, update, origin)
            except Exception:
                log.exception("submit listener %r failed on %s", listener, doc)

    @property
    def active(self) -> bool:
        """True if anyone listens (lets the writer skip building events)."""
        return bool(self._listeners)

    def publish_accepted(self, events: list[ChangeEvent]) -> None:
        """Before the commit of ``events``: their remote ones, to the early listeners."""
        for deliver, early in self._listeners:
            if early:
                deliver([e for e in events if e.origin is not None])

    def publish(self, events: list[ChangeEvent]) -> None:
        """After the commit of ``events``: what each listener has not heard yet."""
        for deliver, early in self._listeners:
            deliver([e for e in events if e.origin is None] if early else events)


# A failing listener is logged, not fatal.


def _each(listener: Listener, events: list[ChangeEvent]) -> None:
    for event in events:
        try:
            listener(event)
        except Exception:
            log.exception("change listener %r failed on %s", listener, event.doc)


def _batch(listener: BatchListener, events: list[ChangeEvent]) -> None:
    if not events:
        return
    try:
        listener(events)
    except Exception:
        log.exception("change listener %r failed on %d events", listener, len(events))
