"""The guest log budget of one module, shared by all its invocations.

Each invocation is already capped (``HostLimits.max_log_records`` lines of
``max_log_bytes``), but a module invoked thousands of times a second could still
grow the node's log without bound. A token bucket per module name bounds that:
each line costs its bytes plus :data:`RECORD_OVERHEAD_BYTES`, refilled at
``log_rate_bytes_per_s`` up to ``log_burst_bytes``. A line over budget is dropped
and counted; the node says so once per ``log_note_interval_s`` per module, with
how many lines it dropped since it last said so.

One bucket per module per *process* would let N invocation workers log N times
the budget. So in a worker a budget is *granted* (``ask`` given): it never
refills by itself; it holds tokens the node handed out of its own bucket for
that module (:meth:`withdraw`, in ``edgestate.node.workers.logshare``), and asks
for a batch of ``batch_bytes`` more when it falls below half a batch, at most one
request at a time, so the node-wide total never exceeds one bucket's worth.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

# What a line costs the node's log beyond the guest's bytes (time, level, logger,
# module name): an empty line is not free, so a flood of them is bounded too.
RECORD_OVERHEAD_BYTES = 64

# A worker's batch is this fraction of the burst: small enough that workers
# logging at once share the node's bucket, big enough that a flood asks the
# node a few times a second at most (16 KiB/s, 139 KiB burst: 35 KiB, ~2 s).
GRANT_BATCH_FRACTION = 0.25

note_log = logging.getLogger("edgestate.guest")


def grant_batch_bytes(burst_bytes: int) -> int:
    """The batch a worker asks the node for, for a budget of ``burst_bytes``."""
    return max(1, int(burst_bytes * GRANT_BATCH_FRACTION))


class LogBudget:
    """A token bucket of log bytes for one module (thread-safe)."""

    __slots__ = (
        "_ask",
        "_asking",
        "_batch",
        "_clock",
        "_lock",
        "_next_note",
        "_pending",
        "_retry_at",
        "_stamp",
        "_tokens",
        "burst",
        "dropped_bytes",
        "dropped_records",
        "module",
        "note_interval_s",
        "rate",
    )

    def __init__(
        self,
        module: str,
        *,
        rate_bytes_per_s: int,
        burst_bytes: int,
        note_interval_s: float,
        clock: Callable[[], float] = time.monotonic,
        ask: Callable[[str, int], None] | None = None,
        batch_bytes: int = 0,
    ) -> None:
        self.module = module
        self.rate = rate_bytes_per_s
        self.burst = burst_bytes
        self.note_interval_s = note_interval_s
        self.dropped_records = 0
        self.dropped_bytes = 0
        self._clock = clock
        self._lock = threading.Lock()
        self._tokens = float(burst_bytes)
        self._stamp = clock()
        self._next_note = 0.0
        self._pending = 0  # dropped since the last note
        # Granted mode: ask(module, nbytes) requests tokens (from any thread; the
        # answer comes to grant()). Empty until the first grant comes.
        self._ask = ask
        self._batch = max(1, batch_bytes)
        self._asking = ask is not None
        self._retry_at = 0.0
        if ask is not None:
            self._tokens = 0.0
            ask(module, self._batch)

    def take(self, nbytes: int) -> bool:
        """Spend the cost of a ``nbytes`` line; False (and counted) if over budget."""
        cost = nbytes + RECORD_OVERHEAD_BYTES
        with self._lock:
            now = self._clock()
            if self._ask is None:
                self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
                self._stamp = now
            elif (
                not self._asking and self._tokens - cost < self._batch / 2 and now >= self._retry_at
            ):
                self._asking = True
                self._ask(self.module, self._batch)
            if self._tokens >= cost:
                self._tokens -= cost
                return True
            self.dropped_records += 1
            self.dropped_bytes += nbytes
            self._pending += 1
            if now < self._next_note:
                return False
            self._next_note = now + self.note_interval_s
            pending, self._pending = self._pending, 0
        note_log.warning(
            "[%s] guest log over its budget (%d bytes/s, burst %d): dropped %d line(s) since "
            "the last note; at most one note per %g s (runtime.host.log_* settings)",
            self.module,
            self.rate,
            self.burst,
            pending,
            self.note_interval_s,
            extra={"fields": {"module": self.module, "dropped": pending}},
        )
        return False

    def withdraw(self, nbytes: int) -> int:
        """Take up to ``nbytes`` of tokens out of this bucket; how many it gave.

        The node's side of a granted budget: each worker's batch comes from here.
        """
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            given = max(0, min(nbytes, int(self._tokens)))
            self._tokens -= given
            return given

    def grant(self, nbytes: int) -> None:
        """Granted mode: the node's answer to the last request (``nbytes`` may be 0)."""
        with self._lock:
            self._tokens += max(0, nbytes)
            self._asking = False
            if nbytes < self._batch:
                # The node's bucket ran short: ask again once it has refilled the rest.
                wait = (self._batch - nbytes) / self.rate if self.rate > 0 else float("inf")
                self._retry_at = self._clock() + wait
