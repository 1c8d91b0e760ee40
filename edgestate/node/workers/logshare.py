"""Guest log budgets across invocation workers: one bucket per module, node-wide.

Each worker's budget for a module is *granted* (:mod:`edgestate.host.logbudget`):
it asks with an ``lq`` message for a batch of bytes, and the node answers ``lg``
with what it withdrew from its own bucket for that module (refilled at
``runtime.host.log_rate_bytes_per_s`` up to ``log_burst_bytes``, as in a node
without workers). However many workers run a module, the node's log gets at most
one budget's worth of its lines. Dropped lines are still counted by each worker
and summed here, those of workers that exited included.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from edgestate.errors import WorkerLinkError
from edgestate.host import HostLimits
from edgestate.host.logbudget import LogBudget
from edgestate.node.workers.process import WorkerProcess

# Buckets kept: one per module name a worker asked for. Workers ask only for the
# modules the node sent them, so this is never reached in practice; it bounds a
# worker gone wrong.
MAX_BUCKETS = 10_000


class NodeLogShare:
    """The node's buckets of guest log bytes and its dropped-line totals."""

    def __init__(self, host: HostLimits) -> None:
        self._host = host
        self._buckets: dict[str, LogBudget] = {}
        self._retired: dict[str, tuple[int, int]] = {}  # dropped by workers that exited

    def answer(self, message: dict[str, Any]) -> dict[str, Any]:
        """The ``lg`` answer to a worker's ``lq`` request."""
        module, want = message.get("m"), message.get("b")
        if not isinstance(module, str) or type(want) is not int or want < 0:
            raise WorkerLinkError(f"malformed log budget request from a worker: {message!r:.80}")
        bucket = self._buckets.get(module)
        if bucket is None:
            if len(self._buckets) >= MAX_BUCKETS:
                return {"t": "lg", "m": module, "b": 0}
            host = self._host
            bucket = self._buckets[module] = LogBudget(
                module,
                rate_bytes_per_s=host.log_rate_bytes_per_s,
                burst_bytes=host.log_burst_bytes,
                note_interval_s=host.log_note_interval_s,
            )
        return {"t": "lg", "m": module, "b": bucket.withdraw(want)}

    def retire(self, worker: WorkerProcess) -> None:
        """Keep the dropped-line counts of a worker that exited."""
        for module, (records, size) in worker.logs.items():
            old = self._retired.get(module, (0, 0))
            self._retired[module] = (old[0] + records, old[1] + size)

    def dropped(self, workers: Iterable[WorkerProcess]) -> dict[str, tuple[int, int]]:
        """Guest log (lines, bytes) dropped per module by ``workers`` and past ones."""
        out = dict(self._retired)
        for worker in workers:
            for module, (records, size) in worker.logs.items():
                old = out.get(module, (0, 0))
                out[module] = (old[0] + records, old[1] + size)
        return out
