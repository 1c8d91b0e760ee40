"""Starting a coroutine in the caller's turn of the loop.

A send that the transport takes at once (the usual case: its buffer is not full)
needs no task; making one costs a turn of the loop, which is where a relayed
update spends its time between arriving and leaving (docs/yjs.md). Python 3.12
has this built in (``eager_start``); on 3.11 a small trampoline carries a
coroutine that did suspend on to the end in a task. :class:`OncePerTurn` keeps
a burst from going out one frame per update.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine
from typing import Any


def start_eagerly(coro: Coroutine[Any, Any, None]) -> asyncio.Task[None] | None:
    """Run ``coro`` now, up to its first suspension; None if it finished, else the
    task that runs the rest. An exception raised before it suspends is raised here;
    one raised later is the task's."""
    if sys.version_info >= (3, 12):
        task: asyncio.Task[None] = asyncio.Task(coro, eager_start=True)  # type: ignore[call-arg]
        if task.done():
            task.result()  # raise it here, as on 3.11
            return None
        return task
    try:
        waiting = coro.send(None)
    except StopIteration:
        return None
    except BaseException:
        coro.close()
        raise
    return asyncio.get_running_loop().create_task(_carry_on(coro, waiting))


async def _carry_on(coro: Coroutine[Any, Any, None], waiting: Any) -> None:
    # What asyncio.Task does with each value a coroutine yields: a future to wait
    # for (its result is read by the coroutine's own await once resumed), or None
    # for "run again next turn".
    while True:
        try:
            if waiting is None:
                await asyncio.sleep(0)
            else:
                waiting._asyncio_future_blocking = False
                await asyncio.wait([waiting])
        except asyncio.CancelledError as cancelled:
            if waiting is not None:
                waiting.cancel()
            try:
                waiting = coro.throw(cancelled)
            except StopIteration:
                return
            continue
        try:
            waiting = coro.send(None)
        except StopIteration:
            return


class OncePerTurn:
    """Says yes once per turn of the event loop: the first message of a turn may go
    eagerly; the rest of that turn's queue behind it and leave together (a burst
    costs its receiver a frame per turn, not one per update)."""

    def __init__(self) -> None:
        self._spent = False

    def take(self) -> bool:
        """True the first time in a turn of the running loop."""
        if self._spent:
            return False
        self._spent = True
        asyncio.get_running_loop().call_soon(self._turn_ended)
        return True

    def _turn_ended(self) -> None:
        self._spent = False
