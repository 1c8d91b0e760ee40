"""start_eagerly: a coroutine's first step in the caller's turn, the rest in a task."""

from __future__ import annotations

import asyncio

import pytest

from edgestate.sync.eager import start_eagerly


async def test_a_coroutine_that_never_suspends_runs_now_without_a_task() -> None:
    ran: list[str] = []

    async def body() -> None:
        ran.append("ran")

    assert start_eagerly(body()) is None
    assert ran == ["ran"]  # before this turn ended


async def test_one_that_suspends_runs_its_first_step_now_and_the_rest_in_a_task() -> None:
    gate: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    steps: list[object] = []

    async def body() -> None:
        steps.append("first")
        steps.append(await gate)  # the future's result reaches the coroutine
        await asyncio.sleep(0)  # a bare yield, as asyncio.sleep(0) makes
        steps.append("last")

    task = start_eagerly(body())
    assert task is not None and steps == ["first"]
    gate.set_result(7)
    await asyncio.wait_for(task, 5)
    assert steps == ["first", 7, "last"]


async def test_an_error_before_the_first_suspension_is_raised_to_the_caller() -> None:
    async def body() -> None:
        raise ConnectionResetError("gone")

    with pytest.raises(ConnectionResetError, match="gone"):
        start_eagerly(body())


async def test_an_error_after_it_is_the_tasks_and_a_failed_future_reaches_the_coroutine() -> None:
    gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    caught: list[BaseException] = []

    async def body() -> None:
        try:
            await gate
        except KeyError as exc:
            caught.append(exc)
        raise ValueError("later")

    task = start_eagerly(body())
    assert task is not None
    gate.set_exception(KeyError("inner"))
    with pytest.raises(ValueError, match="later"):
        await asyncio.wait_for(task, 5)
    assert [type(e) for e in caught] == [KeyError]


async def test_cancelling_the_task_cancels_what_the_coroutine_waits_on() -> None:
    gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    cleaned: list[str] = []

    async def body() -> None:
        try:
            await gate
        finally:
            cleaned.append("finally")

    task = start_eagerly(body())
    assert task is not None
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cleaned == ["finally"] and gate.cancelled()
