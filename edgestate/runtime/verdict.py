"""The budget's verdict on the caller's loop: a 504 that does not wait for the guest.

The guest's thread stops itself at its deadline (runtime.budget in wasm code,
host.binding on entry to a host call), but only when it runs: a niced thread
kept off the CPU by other work notices its deadline tick late (measured: up to
14.5 ms on a quiet 2-core machine). So the event loop awaiting the guest arms a
timer too, at the guest's deadline (its request's arrival plus its budget, known
before the guest starts: host.budget). Not a tick later, by when the guest's own
check would have stopped it had its thread been running: the answer is what the
client waits for, and waiting for that check gains it only a message saying
where the guest was (issue 11 leaves 10 ms past a 1,000 ms budget for the whole
HTTP answer; a tick is 2 of them). When it fires and the guest still runs, the
budget rule's test of starvation (:func:`edgestate.host.budget.starved`, fed the
guest thread's CPU time, read from the loop) decides: a guest that had its share
of a CPU (a spinner, a host-call loop) is answered with the budget's
:class:`~edgestate.errors.DeadlineExceededError` at once, as its trap would be;
a starved one is left to its thread (its grace and its backstop are the
thread's, see ``_check``) and looked at again each tick.

The guest's thread is not stopped by this: it stops at its own check, as before,
and whatever it returns is dropped, so a 504 never comes with written data (the
commit only follows a result). Its admission slot is held until it ends
(:meth:`~edgestate.runtime.admission.Held.until`), so a module never runs more
guests at once than its cap.

Cost per invocation: a timer armed and cancelled on the loop and one more future
(~2-3 us against ``asyncio.shield``'s, measured); on the guest's thread, four
attribute writes.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Generic, TypeVar

from edgestate.host.abi import HostContext
from edgestate.host.budget import deadline_error, starved

_monotonic = time.monotonic_ns
_read_clock = getattr(time, "clock_gettime_ns", None)
_thread_clock_id = getattr(time, "pthread_getcpuclockid", None)
_threads = threading.local()
T = TypeVar("T")

WHERE = "by its caller (its thread had not stopped yet)"


def thread_cpu_clock() -> int | None:
    """The CPU-time clock of the calling thread, readable from another thread (None
    where there is none). Kept per thread: a guest thread serves many guests."""
    try:
        clock: int | None = _threads.clock
    except AttributeError:
        clock = None
        if _thread_clock_id is not None and _read_clock is not None:
            try:
                clock = _thread_clock_id(threading.get_ident())
            except OSError:
                pass
        _threads.clock = clock
    return clock


class Watch:
    """What the loop may read of one guest running on a thread.

    Written by the guest's thread (the sandbox, when the guest starts; the runtime,
    when it ends) and read by the loop; each field is one atomic store.
    """

    __slots__ = ("began_ns", "clock", "context", "ended")

    def __init__(self) -> None:
        self.began_ns = 0  # when the guest started on its thread (monotonic_ns)
        self.clock: int | None = None
        # Set last when the guest starts: its start, deadline and thread's CPU then.
        self.context: HostContext | None = None
        # The guest returned or failed: its result is on its way to the loop, and
        # is the answer, whatever the clock says now.
        self.ended = False


class Verdict(Generic[T]):
    """The answer to one invocation running on a thread: its result, or the budget's
    error as soon as the rule says so (see the module docstring).

    ``answer`` is the future to await; ``result`` the thread's own, which completes
    when the thread is done with the guest, whichever came first.
    """

    __slots__ = ("_deadline_ns", "_loop", "_tick_s", "_timer", "answer", "result", "watch")

    def __init__(
        self,
        result: asyncio.Future[T],
        watch: Watch,
        *,
        deadline_ns: int,
        tick_ms: float,
    ) -> None:
        loop = result.get_loop()
        self._loop = loop
        self.result = result
        self.watch = watch
        self.answer: asyncio.Future[T] = loop.create_future()
        self._tick_s = tick_ms / 1000
        # The deadline is known before the guest starts (its budget counts from its
        # request's arrival), so one timer, armed once, at it: however late its
        # thread starts, the answer is not.
        self._deadline_ns = deadline_ns
        delay_s = (deadline_ns - _monotonic()) / 1e9
        self._timer: asyncio.TimerHandle | None = loop.call_later(max(0.0, delay_s), self._check)
        result.add_done_callback(self._relay)

    def _relay(self, result: asyncio.Future[T]) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        answer = self.answer
        if result.cancelled():
            if not answer.done():
                answer.cancel()
            return
        error = result.exception()  # retrieved even when dropped: no "never retrieved"
        if answer.done():  # answered already (the verdict, or the caller left): dropped
            return
        if error is None:
            answer.set_result(result.result())
        else:
            answer.set_exception(error)

    def _check(self) -> None:
        self._timer = None
        watch = self.watch
        if self.answer.done() or watch.ended:
            return
        now = _monotonic()
        early = self._deadline_ns - now
        if early > 0:  # a loop's timer may fire a little early: never before the budget
            self._again(early / 1e9)
            return
        context = watch.context
        if context is None:
            # Its thread has not even started it: starved, so left to that thread
            # (its grace, its backstop), looked at again each tick.
            self._again(self._tick_s)
            return
        cpu = 0  # unknown (no per-thread CPU clock): counted as starved
        clock = watch.clock
        if clock is not None and _read_clock is not None:
            try:
                cpu = _read_clock(clock) - context.cpu_start_ns
            except OSError:
                cpu = 0
        if starved(now - context.arrived_ns, cpu):  # since it arrived (host.budget)
            # Left to its thread, backstop included: from here a starved guest and
            # one whose call already returned, its thread waiting for the GIL or a
            # core, look the same (measured: a noop answered 504 at its backstop).
            self._again(self._tick_s)
            return
        error = deadline_error(context, now, WHERE, cpu)
        error.ran_ns = now - watch.began_ns
        self.answer.set_exception(error)

    def _again(self, delay_s: float) -> None:
        self._timer = self._loop.call_later(delay_s, self._check)
