"""The invocation threads (runtime.guest_threads): results, errors, context, batching, close."""

from __future__ import annotations

import asyncio
import contextvars
import threading

import pytest

from edgestate.runtime.guest_threads import GuestThreads

request = contextvars.ContextVar("request", default="none")


def test_results_errors_and_the_callers_context_come_back_to_the_loop() -> None:
    threads = GuestThreads(2)
    loop_thread: list[int] = []

    def work(n: int) -> tuple[int, str, int]:
        if n < 0:
            raise ValueError(f"bad {n}")
        return n * 2, request.get(), threading.get_ident()

    async def main() -> None:
        loop_thread.append(threading.get_ident())
        request.set("r-1")
        value, seen, ident = await threads.submit(lambda: work(21))
        assert (value, seen) == (42, "r-1")
        assert ident != loop_thread[0]  # never on the loop
        with pytest.raises(ValueError, match="bad -1"):
            await threads.submit(lambda: work(-1))

    try:
        asyncio.run(main())
    finally:
        threads.close()


def test_many_concurrent_results_are_each_delivered_once() -> None:
    threads = GuestThreads(3)

    async def main() -> list[int]:
        return list(await asyncio.gather(*(threads.submit(lambda i=i: i) for i in range(500))))

    try:
        assert asyncio.run(main()) == list(range(500))
    finally:
        threads.close()


def test_a_guest_holding_a_thread_leaves_the_others_serving() -> None:
    threads = GuestThreads(2)
    release = threading.Event()

    async def main() -> None:
        stuck = threads.submit(lambda: release.wait(30))
        # Bounded: the other thread answers while the first is held.
        assert await asyncio.wait_for(threads.submit(lambda: "served"), 10) == "served"
        assert not stuck.done()
        release.set()
        assert await asyncio.wait_for(stuck, 10) is True

    try:
        asyncio.run(main())
    finally:
        release.set()
        threads.close()


def test_close_cancels_work_not_started_and_stops_every_thread() -> None:
    threads = GuestThreads(1, name="gt-close")
    release = threading.Event()
    started = threading.Event()

    def hold() -> str:
        started.set()
        release.wait(30)
        return "done"

    async def main() -> None:
        running = threads.submit(hold)
        queued = threads.submit(lambda: "never")
        await asyncio.get_running_loop().run_in_executor(None, started.wait, 10)
        closer = threading.Thread(target=threads.close, daemon=True)
        closer.start()
        try:
            release.set()
            assert await asyncio.wait_for(running, 10) == "done"
            with pytest.raises(asyncio.CancelledError):
                await asyncio.wait_for(queued, 10)
        finally:
            closer.join(10)
        assert not closer.is_alive()

    try:
        asyncio.run(main())
    finally:
        release.set()
        threads.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("gt-close")]
    with pytest.raises(RuntimeError, match="closed"):
        asyncio.run(_submit(threads))


async def _submit(threads: GuestThreads) -> object:
    return await threads.submit(lambda: None)


def test_an_initializer_runs_on_each_thread_and_zero_threads_is_refused() -> None:
    seen: list[str] = []
    threads = GuestThreads(
        2, name="gt-init", initializer=lambda: seen.append(threading.current_thread().name)
    )

    async def main() -> None:
        await asyncio.gather(*(threads.submit(lambda: None) for _ in range(4)))

    try:
        asyncio.run(main())
    finally:
        threads.close()
    assert sorted(seen) == ["gt-init_0", "gt-init_1"]
    with pytest.raises(ValueError, match="at least one"):
        GuestThreads(0)
