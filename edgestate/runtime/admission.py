"""Admission: which invocations may run now, so no module can take every thread.

The rule (README, "Containment"): invocations run on a small pool of threads,
never on the caller's event loop, so a guest burning its whole wall-time budget
stalls one thread, not the node's API; and one module may run at most
``max_running_per_module`` invocations at once. Further invocations of that
module wait in a bounded queue, each for at most ``queue_wait_ms``; one that
finds the queue full, or waits too long, is refused at once with
:class:`~edgestate.errors.BusyError` (HTTP 503 ``busy`` with ``Retry-After``),
and other modules are unaffected. With the defaults (16 threads, 4 per module) it
takes four modules burning their budgets at once to occupy every thread.

The gate is per process and knows nothing of HTTP or of the node, so every
process that runs invocations (the in-process node, each invocation worker)
applies the same rule to its own invocations.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from edgestate.errors import BusyError, ClientGoneError


@dataclass(frozen=True, slots=True, kw_only=True)
class AdmissionConfig:
    """Tunables of the admission rule. Each default carries its reason."""

    # Threads running wasm for async invocations (0: on the caller's event loop,
    # the cheapest path, but a guest spinning for its 1 s budget then stalls
    # every request for 1 s). wasm runs with the GIL released, so threads beyond
    # the core count still keep a well-behaved module served while others spin;
    # an idle one costs a parked thread. 16, with 4 per module below: the same
    # share as 8 and 2 (four modules to fill them all), twice the invocations in
    # flight, so a worker's guests finish in batches and its writes share group
    # commits (scripts/bench_node.py, 64 clients, two workers, quiet machine, two
    # rounds side by side: 2,538 -> 3,120 req/s, CPU per invocation 0.665 -> 0.541
    # ms; containment side by side the same within its noise, docs/containment.md).
    threads: int = 16
    # Niceness added to those threads (Linux, where it is per thread; 0: none).
    # The event loop (health, admin, sync, every response) then wins the CPU
    # from guests spinning on every core instead of taking turns with them
    # (2 x spin on 2 cores: kv-echo kept 60 % at 0, ~100 % at 5). Not more: the
    # wall-time budget counts time a thread waits for a core, and at 10, beside
    # other busy processes, a well-behaved 100 ms module began missing its budget.
    thread_niceness: int = 5
    # Invocations of one module running at once: at most a quarter of the
    # threads, so a module (or a client hammering it) never holds them all.
    max_running_per_module: int = 4
    # Invocations of one module waiting for a slot beyond that: a short burst is
    # absorbed; a module that is slow because it burns its budget is refused
    # instead of growing a queue (and latencies) without bound.
    max_queued_per_module: int = 64
    # Longest wait for a slot: past it the caller is better off retrying. Shorter
    # when less is left of the invocation's wall-time budget, which counts from
    # its arrival (Runtime.arun): a slot that comes after the budget is no use.
    queue_wait_ms: int = 1000
    # What the refusal's Retry-After tells a client: about one wall-time budget.
    retry_after_s: int = 1


def lower_thread_priority(niceness: int) -> None:
    """Make the calling thread ``niceness`` nicer (a thread-pool initializer).

    Best effort: where priorities are per process, or not allowed, it does nothing.
    """
    if niceness <= 0 or not hasattr(os, "setpriority"):
        return
    tid = threading.get_native_id()
    try:
        os.setpriority(
            os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + niceness)
        )
    except OSError:
        pass


Gone = Callable[[], bool]
"""Whether the caller of a queued invocation has gone (its client disconnected)."""


class _Gate:
    """The slots of one module: how many are free, who waits for one, in order.

    Not an ``asyncio.Semaphore``: a slot is handed to the next waiter whose caller
    is still there, and a full queue is first cleared of callers that have gone.
    Otherwise a client that gives up (a timeout, a closed keep-alive connection)
    leaves its invocation queued: it holds a place others are refused for, and
    runs later for nobody.
    """

    __slots__ = ("free", "queue", "running")

    def __init__(self, slots: int) -> None:
        self.free = slots
        self.running = 0
        self.queue: deque[tuple[asyncio.Future[None], Gone | None]] = deque()

    def purge(self) -> int:
        """Refuse the queued invocations whose callers have gone; how many there were."""
        kept: deque[tuple[asyncio.Future[None], Gone | None]] = deque()
        refused = 0
        for entry in self.queue:
            future, gone = entry
            if gone is not None and gone():
                future.set_exception(_client_gone())
                refused += 1
            else:
                kept.append(entry)
        self.queue = kept
        return refused

    def release(self) -> None:
        """Hand a slot to the next waiter still wanted, or mark it free."""
        queue = self.queue
        while queue:
            future, gone = queue.popleft()
            if future.done():  # timed out or cancelled meanwhile
                continue
            if gone is not None and gone():
                future.set_exception(_client_gone())
                continue
            future.set_result(None)
            return
        self.free += 1


def _free(gate: _Gate) -> None:
    gate.running -= 1
    gate.release()


def _client_gone() -> ClientGoneError:
    return ClientGoneError("the client closed its connection while the invocation waited")


class Held:
    """One slot held by an ``async with admission.slot(...)`` body.

    :meth:`until` keeps it past the body: an invocation answered before its guest's
    thread ended (its caller gave up, or its budget's verdict came from the loop)
    still runs on that thread, so its slot stays taken until the thread is done,
    or the module would run more than ``max_running_per_module`` guests at once.
    """

    __slots__ = ("future",)

    def __init__(self) -> None:
        self.future: asyncio.Future[Any] | None = None

    def until(self, future: asyncio.Future[Any]) -> None:
        """Release the slot when ``future`` is done (now, if it is), not when the body ends."""
        self.future = future


class Admission:
    """The per-module concurrency cap with a bounded, time-limited wait queue.

    Used from one event loop (the asyncio primitives are not thread-safe).
    """

    def __init__(self, config: AdmissionConfig | None = None) -> None:
        self.config = config or AdmissionConfig()
        if self.config.max_running_per_module < 1:
            raise ValueError("max_running_per_module must be at least 1")
        self._gates: dict[str, _Gate] = {}

    def running(self, module: str) -> int:
        """Invocations of ``module`` holding a slot now."""
        gate = self._gates.get(module)
        return 0 if gate is None else gate.running

    def waiting(self, module: str) -> int:
        """Invocations of ``module`` queued for a slot now."""
        gate = self._gates.get(module)
        return 0 if gate is None else len(gate.queue)

    @asynccontextmanager
    async def slot(
        self, module: str, *, gone: Gone | None = None, budget_left_ms: float | None = None
    ) -> AsyncIterator[Held]:
        """Hold one of ``module``'s slots for the body (or longer: :meth:`Held.until`).

        :class:`BusyError` if none comes; :class:`ClientGoneError` if ``gone()``
        turns true while it waits (it is checked when a slot comes free and when
        the queue is full, so an abandoned invocation neither runs nor holds a place).
        ``budget_left_ms``: what is left of the invocation's wall-time budget, which
        counts from its arrival: it waits at most that long (or ``queue_wait_ms``,
        whichever is shorter), and a slot coming after it ran out is no use.
        """
        config = self.config
        gate = self._gates.get(module)
        if gate is None:
            # Callers pass only names of loaded modules, so this stays bounded.
            gate = self._gates[module] = _Gate(config.max_running_per_module)
        if gone is not None and gone():
            raise _client_gone()  # read its request, then left: nothing to run for
        if budget_left_ms is not None and budget_left_ms <= 0:
            raise self._busy(module, "its wall-time budget ran out before it was admitted")
        if gate.free > 0 and not gate.queue:
            gate.free -= 1
        else:
            await self._wait(module, gate, gone, budget_left_ms)
        gate.running += 1
        held = Held()
        try:
            yield held
        finally:
            future = held.future
            if future is None or future.done():
                _free(gate)
            else:
                future.add_done_callback(lambda _: _free(gate))

    async def _wait(
        self, module: str, gate: _Gate, gone: Gone | None, budget_left_ms: float | None
    ) -> None:
        config = self.config
        if len(gate.queue) >= config.max_queued_per_module and not gate.purge():
            raise self._busy(module, "its queue is full")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (future, gone)
        gate.queue.append(entry)
        wait_ms: float = config.queue_wait_ms
        why = f"no slot came within {config.queue_wait_ms} ms"
        if budget_left_ms is not None and budget_left_ms < wait_ms:
            wait_ms = budget_left_ms
            why = "no slot came within its wall-time budget (which counts from its arrival)"
        try:
            async with asyncio.timeout(wait_ms / 1000):
                await asyncio.shield(future)
        except TimeoutError:
            self._abandon(gate, entry)
            raise self._busy(module, why) from None
        except BaseException:
            self._abandon(gate, entry)
            raise

    @staticmethod
    def _abandon(gate: _Gate, entry: tuple[asyncio.Future[None], Gone | None]) -> None:
        future = entry[0]
        if not future.done():
            future.cancel()
            gate.queue.remove(entry)  # at most max_queued_per_module entries
        elif not future.cancelled() and future.exception() is None:
            gate.release()  # the slot came just as the wait ended: pass it on

    def _busy(self, module: str, why: str) -> BusyError:
        config = self.config
        return BusyError(
            f"module {module!r} is busy: {config.max_running_per_module} invocations are "
            f"running and {why}; retry in {config.retry_after_s} s",
            retry_after_s=config.retry_after_s,
        )
