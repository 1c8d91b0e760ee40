"""Holding a real store's writer thread, so "before the writer took it" is an
order of events in a test, not a race against the disk."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator
from typing import Any

from pycrdt import Doc, Map

from edgestate.store import ChangeEvent, Store

WAIT_S = 10.0
HOLD_DOC = "hold"


def one_key_update(key: str, value: bytes = b"v", client: int | None = None) -> bytes:
    """A Yjs v1 update setting ``key`` of the root map (as a client's write)."""
    doc: Doc[Any] = Doc() if client is None else Doc(client_id=client)
    doc["root"] = root = Map[Any]()
    root[key] = value
    return doc.get_update()


@contextlib.asynccontextmanager
async def writer_held(store: Store) -> AsyncIterator[None]:
    """``store``'s writer thread stopped inside an early listener until the block
    ends: a remote update to :data:`HOLD_DOC` (created if missing) holds it there."""
    gate, held = threading.Event(), threading.Event()

    def hold(event: ChangeEvent) -> None:
        if event.doc == HOLD_DOC and not held.is_set():
            held.set()
            gate.wait(WAIT_S)

    unsubscribe = store.subscribe(hold, early=True)
    pending = store.submit_update(HOLD_DOC, one_key_update("h"), origin="test:hold", create=True)
    try:
        assert await asyncio.to_thread(held.wait, WAIT_S), "the writer never reached the hold"
        yield
    finally:
        gate.set()
        await pending
        unsubscribe()
