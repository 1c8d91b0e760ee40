"""Liveness of the node, as an invocation worker sees it: the heartbeat and ``/healthz``.

The node sends every worker a tiny ``hb`` message every :data:`INTERVAL_S` on
the link they already share. A worker answers ``GET /healthz`` itself, from that
alone: 200 while its link is up and the last beat is younger than
:data:`STALE_S`; 503 ``node_link_lost`` once the link closed, 503
``node_unresponsive`` while the beats are late (the node's loop is stalled or the
process stopped). Never a cached answer: each one is about the node's last
heartbeat and this worker's own loop, which is the one answering.

Before, a worker relayed ``/healthz`` to the node over a unix socket: three turns
of two busy event loops (worker, node, worker) per probe, so under a CPU-bound
attack its p99 was the sum of both loops' queueing (11.7 ms on a quiet 2-core
machine). ``/readyz`` is still relayed: readiness is the node's own checks.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable

from aiohttp import web

from edgestate.errors import NodeUnresponsiveError, WorkerLinkError
from edgestate.node.api.responses import error_reply
from edgestate.node.workers.process import WorkerProcess

# How often the node beats: cheap (a 12-byte message per worker), and often enough
# that a few lost turns of a loaded loop do not look like a stalled node.
INTERVAL_S = 0.1
# A worker calls the node unresponsive after this long without a beat: ten beats,
# so a node loop busy for a few hundred ms (a big deploy, a compaction) stays
# healthy, while a stopped or wedged node is reported within about a second.
STALE_S = 1.0
# A worker that does not read its link (stopped, wedged) is sent no more beats
# once this much is queued for it: its own /healthz is not answering anyway.
MAX_QUEUED_BYTES = 64 << 10

BEAT = {"t": "hb"}


async def send_heartbeats(
    workers: Callable[[], Iterable[WorkerProcess]], closing: Callable[[], bool]
) -> None:
    """Beat every worker each :data:`INTERVAL_S` until ``closing()`` (the pool's task)."""
    while not closing():
        for worker in workers():
            transport = worker.writer.transport
            if transport.get_write_buffer_size() < MAX_QUEUED_BYTES:
                worker.send(BEAT)
        await asyncio.sleep(INTERVAL_S)


class NodeHeartbeat:
    """A worker's view of the node's beats, and its ``/healthz`` handler."""

    def __init__(
        self,
        link_up: Callable[[], bool],
        *,
        stale_s: float = STALE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._link_up = link_up
        self._stale_s = stale_s
        self._clock = clock
        self.last = clock()  # the link is new: the node has just spoken

    def beat(self) -> None:
        """A beat (or any message) came from the node."""
        self.last = self._clock()

    def problem(self) -> WorkerLinkError | None:
        """Why the node is not alive from here, or None if it is."""
        if not self._link_up():
            return WorkerLinkError("this worker's link to the node is closed")
        quiet = self._clock() - self.last
        if quiet > self._stale_s:
            return NodeUnresponsiveError(
                f"no heartbeat from the node for {quiet * 1000:.0f} ms "
                f"(limit {self._stale_s * 1000:.0f} ms): it is stalled or stopped"
            )
        return None

    async def healthz(self, request: web.Request) -> web.StreamResponse:
        """``GET /healthz``: 200 ``{"ok": true}``, or 503 with the reason."""
        problem = self.problem()
        if problem is not None:
            return error_reply(problem)
        return web.json_response({"ok": True})
