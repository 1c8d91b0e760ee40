"""The admission rule on its own: a per-module cap, a bounded queue, busy past it."""

from __future__ import annotations

import asyncio

import pytest

from edgestate.errors import BusyError
from edgestate.runtime.admission import Admission, AdmissionConfig

pytestmark = pytest.mark.timeout(30)


def test_past_the_cap_invocations_queue_then_are_refused_busy() -> None:
    async def scenario() -> None:
        admission = Admission(
            AdmissionConfig(max_running_per_module=1, max_queued_per_module=1, retry_after_s=3)
        )
        release = asyncio.Event()
        order: list[str] = []

        async def hold(tag: str) -> None:
            async with admission.slot("m"):
                order.append(tag)
                await release.wait()

        first = asyncio.create_task(hold("first"))
        await asyncio.sleep(0)
        second = asyncio.create_task(hold("second"))
        await asyncio.sleep(0)
        assert (admission.running("m"), admission.waiting("m")) == (1, 1)
        with pytest.raises(BusyError, match="queue is full") as info:
            async with admission.slot("m"):
                pass
        assert info.value.code == "busy" and info.value.retry_after_s == 3
        async with admission.slot("other"):  # another module is unaffected
            order.append("other")
        release.set()
        await asyncio.gather(first, second)
        assert order == ["first", "other", "second"]
        assert (admission.running("m"), admission.waiting("m")) == (0, 0)

    asyncio.run(scenario())


def test_a_queued_invocation_is_refused_when_its_wait_runs_out() -> None:
    async def scenario() -> None:
        admission = Admission(AdmissionConfig(max_running_per_module=1, queue_wait_ms=0))
        async with admission.slot("m"):
            with pytest.raises(BusyError, match="no slot came within 0 ms"):
                async with admission.slot("m"):
                    pass
            assert admission.waiting("m") == 0
        async with admission.slot("m"):  # the refused one left nothing held
            assert admission.running("m") == 1

    asyncio.run(scenario())


def test_a_failing_invocation_gives_its_slot_back() -> None:
    async def scenario() -> None:
        admission = Admission(AdmissionConfig(max_running_per_module=1, max_queued_per_module=0))
        with pytest.raises(RuntimeError):
            async with admission.slot("m"):
                raise RuntimeError("guest failed")
        async with admission.slot("m"):
            assert admission.running("m") == 1

    asyncio.run(scenario())
