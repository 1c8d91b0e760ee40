"""A peer's first push of each turn of the loop, sent in that turn.

A relayed update used to wait for the connection's sender task, a turn of the
loop after it was queued (docs/yjs.md, where the time goes). The first update
queued in a turn is now pushed at once (:func:`edgestate.sync.eager.start_eagerly`:
no task unless the socket pushes back); the rest of that turn's updates wake the
sender as before and go out together in one frame, so a burst still costs few
frames.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from edgestate.sync.eager import OncePerTurn, start_eagerly

log = logging.getLogger(__name__)


class TurnPush:
    """Starts at most one push per turn of the loop; owns the tasks of those that
    had to wait for the socket (``cancel()`` stops them)."""

    def __init__(self, peer: Callable[[], str | None]) -> None:
        self._peer = peer
        self._turn = OncePerTurn()
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self, push: Callable[[], Coroutine[Any, Any, None]]) -> bool:
        """Run ``push()`` now unless this turn already did; whether it did."""
        if not self._turn.take():
            return False
        try:
            task = start_eagerly(push())
        except Exception as exc:  # the channel is closing: its reader ends the link
            log.debug("push to %s failed: %s", self._peer(), exc)
            return True
        if task is not None:
            self._tasks.add(task)
            task.add_done_callback(self._done)
        return True

    def cancel(self) -> None:
        """Cancel the pushes still under way."""
        for task in list(self._tasks):
            task.cancel()

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.debug("push to %s failed: %s", self._peer(), task.exception())
