"""The guest log budget of one module, shared by all its invocations.

Each invocation is already capped (``HostLimits.max_log_records`` lines of
``max_log_bytes``), but a module invoked thousands of times a second could still
grow the node's log without bound. A token bucket per module name bounds that:
each line costs its bytes plus :data:`RECORD_OVERHEAD_BYTES`, refilled at
``log_rate_bytes_per_s`` up to ``log_burst_bytes``. A line over budget is dropped
and counted; the node says so once per ``log_note_interval_s`` per module, with
how many lines it dropped since it last said so.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

# What a line costs the node's log beyond the guest's bytes (time, level, logger,
# module name): an empty line is not free, so a flood of them is bounded too.
RECORD_OVERHEAD_BYTES = 64

note_log = logging.getLogger("edgestate.guest")


class LogBudget:
    """A token bucket of log bytes for one module (thread-safe)."""

    __slots__ = (
        "_clock",
        "_lock",
        "_next_note",
        "_pending",
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

    def take(self, nbytes: int) -> bool:
        """Spend the cost of a ``nbytes`` line; False (and counted) if over budget."""
        cost = nbytes + RECORD_OVERHEAD_BYTES
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
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
