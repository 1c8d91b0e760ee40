"""The admission queue and callers that have gone: never run for nobody, never block others."""

from __future__ import annotations

import asyncio

import pytest

from edgestate.errors import BusyError, ClientGoneError
from edgestate.runtime.admission import Admission, AdmissionConfig

pytestmark = pytest.mark.timeout(30)


def test_a_slot_skips_queued_callers_that_have_gone() -> None:
    async def scenario() -> None:
        admission = Admission(AdmissionConfig(max_running_per_module=1, max_queued_per_module=4))
        left = {"a": False, "b": False}
        ran: list[str] = []

        async def queued(tag: str) -> None:
            async with admission.slot("m", gone=lambda: left.get(tag, False)):
                ran.append(tag)

        async with admission.slot("m"):
            tasks = {t: asyncio.create_task(queued(t)) for t in ("a", "b", "c")}
            await asyncio.sleep(0)
            assert admission.waiting("m") == 3
            left["a"] = left["b"] = True  # their clients disconnect while they wait
        results = await asyncio.gather(*tasks.values(), return_exceptions=True)
        assert [type(r) for r in results] == [ClientGoneError, ClientGoneError, type(None)]
        assert ran == ["c"]
        assert (admission.running("m"), admission.waiting("m")) == (0, 0)
        async with admission.slot("m"):  # the slot was handed on, not lost
            assert admission.running("m") == 1

    asyncio.run(scenario())


def test_a_full_queue_is_cleared_of_gone_callers_before_refusing() -> None:
    async def scenario() -> None:
        admission = Admission(AdmissionConfig(max_running_per_module=1, max_queued_per_module=2))
        gone = False
        hold = asyncio.Event()

        async def abandoned() -> None:
            async with admission.slot("m", gone=lambda: gone):
                raise AssertionError("an abandoned invocation ran")

        async with admission.slot("m"):
            stale = [asyncio.create_task(abandoned()) for _ in range(2)]
            await asyncio.sleep(0)
            with pytest.raises(BusyError, match="queue is full"):  # both callers still there
                async with admission.slot("m"):
                    pass
            gone = True
            late = asyncio.create_task(_enter(admission, hold))
            await asyncio.sleep(0)
            assert admission.waiting("m") == 1  # the two gone ones made room
            for task in stale:
                with pytest.raises(ClientGoneError):
                    await task
        hold.set()
        assert await late == "ran"

    asyncio.run(scenario())


def test_a_caller_gone_before_it_is_admitted_does_not_run() -> None:
    async def scenario() -> None:
        admission = Admission(AdmissionConfig())
        with pytest.raises(ClientGoneError, match="closed its connection"):
            async with admission.slot("m", gone=lambda: True):
                raise AssertionError("ran")
        assert admission.running("m") == 0

    asyncio.run(scenario())


def test_a_slot_handed_over_as_the_wait_times_out_is_passed_on() -> None:
    async def scenario() -> None:
        admission = Admission(AdmissionConfig(max_running_per_module=1, queue_wait_ms=0))
        async with admission.slot("m"):
            waiter = asyncio.create_task(_enter(admission, None))
            await asyncio.sleep(0)
        # Released with the waiter queued: it either got the slot or timed out busy;
        # either way no slot is lost.
        try:
            await waiter
        except BusyError:
            pass
        async with admission.slot("m"):
            assert admission.running("m") == 1

    asyncio.run(scenario())


async def _enter(admission: Admission, hold: asyncio.Event | None) -> str:
    async with admission.slot("m"):
        if hold is not None:
            await hold.wait()
    return "ran"
