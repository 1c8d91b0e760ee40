"""The node's handle on each worker process, what it is told at start, its metrics."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgestate.node.metrics import NodeMetrics, counter, gauge
from edgestate.node.workers.forkserver import ForkedProcess
from edgestate.node.workers.protocol import Outbox
from edgestate.runtime import InvocationResult

if TYPE_CHECKING:
    from prometheus_client.core import Metric

    from edgestate.node.config import ApiConfig
    from edgestate.store import StoreConfig
    from edgestate.sync import TLSFiles


log = logging.getLogger("edgestate.node.workers.supervisor")

# Started from scratch, or forked by the fork server (which waits for it instead).
WorkerProc = asyncio.subprocess.Process | ForkedProcess


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    """What a worker process is told at start (pickled on its stdin)."""

    index: int
    api: ApiConfig
    store_dir: Path
    store: StoreConfig
    runtime: Any  # RuntimeConfig, with the cache key
    node_socket: str  # the node's private HTTP listener
    log_level: str
    # The API listening sockets: one per worker index with api.reuse_port (a
    # worker serves listen_fds[index]; the spare gets them all, since it learns
    # its index only on `go`), else the one shared by all.
    listen_fds: tuple[int, ...]
    link_fd: int
    log_format: str = "text"  # edgestate.node.logs: the node's, so one stream reads alike
    tls: TLSFiles | None = None  # api.tls: the cluster certificate paths to serve HTTPS with


@dataclass(eq=False)
class WorkerProcess:
    """The node's handle on one worker process (serving, or the spare)."""

    index: int
    proc: WorkerProc
    writer: asyncio.StreamWriter
    started: float
    have: dict[str, str] = field(default_factory=dict)  # module -> bundle digest
    acks: dict[int, asyncio.Future[dict[str, Any]]] = field(default_factory=dict)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    commits: set[asyncio.Future[Any]] = field(default_factory=set)  # writes not yet durable
    reader_task: asyncio.Task[None] | None = None
    policy: object | None = None  # the trust policy object last sent
    logs: dict[str, tuple[int, int]] = field(default_factory=dict)  # module -> dropped
    loading: list[asyncio.Future[dict[str, Any]]] = field(default_factory=list)  # first loads
    outbox: Outbox = field(init=False)

    def __post_init__(self) -> None:
        self.outbox = Outbox(self.writer)

    @property
    def loaded(self) -> bool:
        """Every module sent at its start is acknowledged (what a spare is ready for)."""
        return all(ack.done() for ack in self.loading)

    def send(self, message: dict[str, Any]) -> None:
        if not self.writer.is_closing():
            self.outbox.send(message)


def pool_metrics(
    workers: dict[int, WorkerProcess],
    spare: WorkerProcess | None,
    restarts: int,
    zygote: int | None,
    served: dict[int, int] | None = None,
) -> Iterable[Metric]:
    """The pool's series: workers serving, restarts, the spare, pids, memory."""
    rss = [(["node"], _rss(os.getpid()))]
    rss += [([f"worker-{i}"], _rss(w.proc.pid)) for i, w in sorted(workers.items())]
    pids = [([f"worker-{i}"], float(w.proc.pid)) for i, w in sorted(workers.items())]
    if spare is not None:
        rss.append((["spare"], _rss(spare.proc.pid)))
        pids.append((["spare"], float(spare.proc.pid)))
    if zygote:
        rss.append((["zygote"], _rss(zygote)))
        pids.append((["zygote"], float(zygote)))
    return [
        gauge(
            "edgestate_workers",
            "Invocation workers serving.",
            [],
            [([], sum(w.ready.is_set() for w in workers.values()))],
        ),
        counter(
            "edgestate_worker_restarts",
            "Invocation workers restarted after dying.",
            [],
            [([], restarts)],
        ),
        gauge(
            "edgestate_spare_workers_ready",
            "Spare workers started and loaded, ready to take a dead worker's place.",
            [],
            [([], float(spare is not None and spare.loaded))],
        ),
        counter(
            "edgestate_worker_invocations",
            "Invocations answered by each worker index (a replacement continues its count).",
            ["worker"],
            [([str(i)], n) for i, n in sorted((served or {}).items())],
        ),
        gauge(
            "edgestate_worker_pid",
            "Process id of each worker and of the spare (for top, perf, kill).",
            ["process"],
            pids,
        ),
        gauge(
            "edgestate_process_rss_bytes",
            "Resident memory of the node and each worker.",
            ["process"],
            rss,
        ),
    ]


def record_report(metrics: NodeMetrics, message: dict[str, Any]) -> int:
    """Count a worker's ``r`` report in the node's metrics; the invocations it holds."""
    rows = 0
    try:
        for row in message.get("inv", ()):
            rows += 1
            if row[1] == "ok":
                metrics.invoked(
                    InvocationResult(row[0], b"", 0, 0, row[2], row[3], row[4], 0, row[5])
                )
            else:
                metrics.failed_code(row[0], row[1])
        for code in message.get("http", ()):
            metrics.http_errors.labels(str(code)).inc()
        for route, method, status, seconds in message.get("req", ()):
            metrics.http.observe(str(route), str(method), int(status), float(seconds))
    except (TypeError, IndexError, ValueError):
        log.warning("malformed metrics report from a worker, ignored")
    return rows


def _rss(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0.0
