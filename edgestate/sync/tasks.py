"""A set of background tasks that its owner starts and stops (nothing outlives it)."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable
from typing import Any

log = logging.getLogger(__name__)


class TaskSet:
    """Tasks one owner spawns; ``stop()`` cancels every one and waits them out."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def spawn(self, coro: Awaitable[Any]) -> None:
        """Run ``coro`` in a task of this set (it leaves the set when done)."""

        async def run() -> None:
            await coro

        task = asyncio.get_running_loop().create_task(run())
        if inspect.iscoroutine(coro):
            # A task cancelled before its first step never awaits ``coro``, which
            # then warns "never awaited" (found in the bounded-mesh tests: a
            # duplicate link's close spawned as the daemon stopped).
            task.add_done_callback(lambda _: coro.close())
        self.add(task)

    def add(self, task: asyncio.Task[None]) -> None:
        """Own a task created elsewhere."""
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def stop(self, wait_s: float) -> None:
        """Cancel every task and wait up to ``wait_s`` for them to unwind."""
        await cancel_and_wait(list(self._tasks), wait_s)


async def cancel_and_wait(tasks: list[asyncio.Task[None]], wait_s: float) -> None:
    """Cancel ``tasks`` and wait up to ``wait_s`` for them; log the ones stuck."""
    for task in tasks:
        task.cancel()
    # asyncio.wait, unlike awaiting each task under suppress(CancelledError),
    # also lets a caller's own timeout cancel this stop.
    if tasks:
        _, stuck = await asyncio.wait(tasks, timeout=wait_s)
        for task in stuck:
            log.warning("sync task %s did not stop within %.0f s", task.get_name(), wait_s)
