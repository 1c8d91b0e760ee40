"""A TaskSet stopped before a spawned coroutine ever ran leaves no "never awaited"
coroutine behind (warnings are errors in this suite)."""

from __future__ import annotations

import asyncio
import gc

from edgestate.sync.tasks import TaskSet


async def test_a_spawn_cancelled_before_it_ran_closes_its_coroutine() -> None:
    ran = asyncio.Event()

    async def work() -> None:
        ran.set()

    tasks = TaskSet()
    coro = work()
    tasks.spawn(coro)
    await tasks.stop(1.0)  # cancelled before the task's first step
    assert not ran.is_set()
    assert coro.cr_frame is None  # closed, not left pending
    gc.collect()


async def test_a_spawned_coroutine_still_runs_to_its_end() -> None:
    ran = asyncio.Event()

    async def work() -> None:
        ran.set()

    tasks = TaskSet()
    tasks.spawn(work())
    await asyncio.wait_for(ran.wait(), 5)
    await tasks.stop(1.0)
