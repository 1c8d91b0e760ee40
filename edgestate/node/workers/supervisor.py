"""The node's side of its invocation workers: start, feed, restart and stop them.

The node owns the listening sockets of the API port (:mod:`.listen`: one per
worker index with ``api.reuse_port``, else one shared) and hands each worker its
own (``pass_fds``); they outlive any worker, so a connection waits in its queue,
rather than being reset, while a dead worker is replaced, and the replacement
(or the spare) accepts from the same queue. The node itself never accepts on
them; its own routes (admin, ``/metrics``, health, ``/yjs``) answer on a private
unix socket the workers proxy to.

Each worker gets a socketpair (:mod:`.protocol`): its writes come in as one
``w`` message per invocation and are answered after the durable group commit;
its outcomes come in as ``r`` reports counted in the node's one
:class:`~edgestate.node.metrics.NodeMetrics`; module and policy changes go out
from the registry's change handling (:meth:`WorkerPool.sync_modules`).

A spare (``api.spare_worker``) is started beside them and fed every module, but
told ``go`` only when a worker dies: it takes the dead one's index and serves at
once, and a new spare is started in the background. Starting a worker is an
interpreter plus wasmtime, aiohttp and the modules: seconds on a loaded machine,
too long for a dead worker's share of the connections to wait.

Ownership: :meth:`WorkerPool.close` sends SIGTERM, waits the shutdown grace,
then SIGKILL; a worker also exits by itself when its socket to the node closes,
so none outlives a node that was killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pickle
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from edgestate.errors import EdgestateError, NodeStartError, WorkerLinkError
from edgestate.node.metrics import NodeMetrics
from edgestate.node.workers.forkserver import ForkServer
from edgestate.node.workers.heartbeat import send_heartbeats
from edgestate.node.workers.listen import listeners
from edgestate.node.workers.logshare import NodeLogShare
from edgestate.node.workers.process import (
    WorkerProc,
    WorkerProcess,
    WorkerSettings,
    pool_metrics,
    record_report,
)
from edgestate.node.workers.protocol import FrameReader
from edgestate.node.workers.writes import WriteQueue

if TYPE_CHECKING:
    from edgestate.node.config import ApiConfig
    from edgestate.runtime import Runtime
    from edgestate.store import Store
    from edgestate.sync import TLSFiles

log = logging.getLogger(__name__)

# A worker that dies this soon after its start is in a crash loop: back off.
CRASH_LOOP_S = 1.0
READY_TIMEOUT_S = 60.0
ACK_TIMEOUT_S = 30.0
SPARE = -1  # the index a spare starts with, until it takes a dead worker's


Bundles = Callable[[], dict[str, tuple[str, bytes, bytes, bytes]]]


class WorkerPool:
    """N invocation worker processes of one node; see the module docstring."""

    def __init__(
        self,
        count: int,
        api: ApiConfig,
        store: Store,
        runtime: Runtime,
        metrics: NodeMetrics,
        bundles: Bundles,
        *,
        tls: TLSFiles | None = None,
        log_level: str = "info",
        log_format: str = "text",
    ) -> None:
        self.count = count
        self._tls = tls  # api.tls: each worker serves HTTPS with these files
        self.api = api
        self.store = store
        self._writes = WriteQueue(store)
        self.runtime = runtime
        self.metrics = metrics
        # name -> (digest, wasm, manifest, signature) of what the node runs now
        self._bundles = bundles
        self._log_level = log_level
        self._log_format = log_format
        self._dir = tempfile.mkdtemp(prefix="edgestate-node-")  # 0700: workers only
        self.node_socket = os.path.join(self._dir, "api.sock")
        self._listeners: list[socket.socket] = []
        # Invocations answered per worker index, across restarts: how evenly the
        # accept queues spread the load (edgestate_worker_invocations_total).
        self.served: dict[int, int] = {}
        self._workers: dict[int, WorkerProcess] = {}
        self._keepers: list[asyncio.Task[None]] = []
        self._lock = asyncio.Lock()
        self._next_id = 0
        self._closing = False
        self.restarts = 0
        self.logs = NodeLogShare(runtime.config.host)  # guest log budgets, node-wide
        self._spare: WorkerProcess | None = None  # loaded, not serving (see the module docstring)
        self._spare_taken = asyncio.Event()
        self._forks: ForkServer | None = None  # api.fork_server
        metrics.add_collector(
            lambda: pool_metrics(
                self._workers,
                self._spare,
                self.restarts,
                self._forks.pid if self._forks else None,
                self.served,
            )
        )

    @property
    def port(self) -> int:
        """The API port the workers serve."""
        return int(self._listeners[0].getsockname()[1])

    def pids(self) -> dict[int, int]:
        """Worker index -> pid, of those running."""
        return {i: w.proc.pid for i, w in sorted(self._workers.items())}

    async def start(self) -> None:
        """Bind the API port, start every worker and wait until each serves."""
        if not 0 < self.count <= 256:
            raise NodeStartError(f"api.workers must be 0..256, got {self.count}")
        self._listeners = listeners(self.api, self.count)
        if self.api.fork_server:
            forks = ForkServer()
            try:
                await forks.start()
                self._forks = forks
            except (OSError, TimeoutError) as exc:
                log.warning("no fork server (%s): workers start from scratch", exc)
                await forks.close()
        first: list[asyncio.Future[None]] = []
        for index in range(self.count):
            started = asyncio.get_running_loop().create_future()
            first.append(started)
            self._keepers.append(
                asyncio.create_task(self._keep(index, started), name=f"edgestate-worker-{index}")
            )
        async with asyncio.timeout(READY_TIMEOUT_S):
            await asyncio.gather(*first)
        beats = send_heartbeats(self._all, lambda: self._closing)
        self._keepers.append(asyncio.create_task(beats, name="edgestate-heartbeat"))
        if self.api.spare_worker:
            # After the serving ones: a spare must not delay the node's start.
            self._keepers.append(asyncio.create_task(self._keep_spare(), name="edgestate-spare"))

    async def close(self) -> None:
        """SIGTERM every worker, SIGKILL after the shutdown grace; wait for all."""
        self._closing = True
        self._spare_taken.set()  # wakes the spare's keeper
        for worker in self._all():
            with contextlib.suppress(ProcessLookupError):
                worker.proc.terminate()
        if self._keepers:
            _, late = await asyncio.wait(self._keepers, timeout=self.api.shutdown_grace_s + 2)
            for worker in self._all():
                with contextlib.suppress(ProcessLookupError):
                    worker.proc.kill()
            if late:
                await asyncio.wait(late)
        if self._forks is not None:
            await self._forks.close()
        for listener in self._listeners:
            listener.close()
        with contextlib.suppress(OSError):
            os.unlink(self.node_socket)
        with contextlib.suppress(OSError):
            os.rmdir(self._dir)

    # --- one slot: start, watch, restart ------------------------------------------

    def _all(self) -> list[WorkerProcess]:
        """The serving workers and the spare."""
        spare = [] if self._spare is None else [self._spare]
        return [*self._workers.values(), *spare]

    async def _keep(self, index: int, first: asyncio.Future[None]) -> None:
        failures = 0
        while not self._closing:
            try:
                worker = self._take_spare(index) if first.done() else None
                worker = worker or await self._spawn(index)
            except (OSError, EdgestateError) as exc:
                if not first.done():
                    first.set_exception(NodeStartError(f"worker {index} did not start: {exc}"))
                    return
                log.error("could not start invocation worker %d: %s", index, exc)
                await asyncio.sleep(1.0)
                continue
            waiting = asyncio.ensure_future(worker.ready.wait())
            exited = asyncio.ensure_future(worker.proc.wait())
            await asyncio.wait([waiting, exited], return_when=asyncio.FIRST_COMPLETED)
            waiting.cancel()
            if worker.ready.is_set() and not first.done():
                first.set_result(None)
            code = await exited
            await self._forget(worker)
            if self._closing:
                break
            if not first.done():
                first.set_exception(
                    NodeStartError(f"invocation worker {index} exited with {code} at start")
                )
                return
            self.restarts += 1
            log.error(
                "invocation worker %d (pid %d) exited with %s; restarting",
                index,
                worker.proc.pid,
                code,
            )
            # A reader killed inside a read transaction leaves its slot in the
            # lock file; LMDB frees it only when asked.
            self.store.clear_stale_readers()
            if time.monotonic() - worker.started < CRASH_LOOP_S:
                failures += 1
                await asyncio.sleep(min(5.0, 0.05 * 2**failures))
            else:
                failures = 0

    def _take_spare(self, index: int) -> WorkerProcess | None:
        """Make the spare worker ``index`` and start it serving; None if there is none."""
        spare = self._spare
        if spare is None or spare.proc.returncode is not None or spare.writer.is_closing():
            return None
        self._spare = None
        self._spare_taken.set()
        spare.index, spare.started = index, time.monotonic()
        self._workers[index] = spare
        spare.send({"t": "go", "index": index})
        log.info("spare worker (pid %d) took the place of worker %d", spare.proc.pid, index)
        return spare

    async def _keep_spare(self) -> None:
        failures = 0
        while not self._closing:
            self._spare_taken.clear()
            try:
                spare = await self._spawn(SPARE, go=False)
            except (OSError, EdgestateError) as exc:
                log.error("could not start the spare invocation worker: %s", exc)
                await asyncio.sleep(1.0)
                continue
            self._spare = spare
            exited = asyncio.ensure_future(spare.proc.wait())
            taken = asyncio.ensure_future(self._spare_taken.wait())
            await asyncio.wait([exited, taken], return_when=asyncio.FIRST_COMPLETED)
            taken.cancel()
            if self._spare is not spare:
                exited.cancel()  # it serves now: its slot's keeper watches it
                continue
            # Died as a spare (or the pool closes): forget it and start another.
            await exited
            self._spare = None
            await self._forget(spare)
            if self._closing:
                return
            failures = failures + 1 if time.monotonic() - spare.started < CRASH_LOOP_S else 0
            await asyncio.sleep(min(5.0, 0.05 * 2**failures) if failures else 0)

    async def _spawn(self, index: int, *, go: bool = True) -> WorkerProcess:
        listening = self._listeners
        # With one listener per index a worker gets its own; the spare all of them.
        if len(listening) > 1:
            listening = listening if index == SPARE else [listening[index]]
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            settings = WorkerSettings(
                index=index,
                api=self.api,
                store_dir=self.store.path,
                store=self.store.config,
                runtime=self.runtime.config,
                node_socket=self.node_socket,
                log_level=self._log_level,
                log_format=self._log_format,
                listen_fds=tuple(s.fileno() for s in listening),
                tls=self._tls,
                link_fd=theirs.fileno(),
            )
            proc = await self._start_process(settings)
        finally:
            theirs.close()
        reader, writer = await asyncio.open_unix_connection(sock=ours, limit=1 << 16)
        worker = WorkerProcess(index, proc, writer, time.monotonic())
        if go:
            self._workers[index] = worker
        worker.reader_task = asyncio.create_task(self._serve(worker, reader))
        async with self._lock:
            # Not awaited one by one: `ready` follows them (a spare's, `loaded`).
            worker.loading = self._send_modules(worker)
        if go:
            worker.send({"t": "go"})
        return worker

    async def _start_process(self, settings: WorkerSettings) -> WorkerProc:
        forks = self._forks
        if forks is not None:
            try:
                return await forks.spawn(settings, (*settings.listen_fds, settings.link_fd))
            except OSError as exc:
                log.error("fork server failed (%s); starting workers from scratch", exc)
                self._forks = None
                await forks.close()
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "edgestate.node.workers.main",
            stdin=asyncio.subprocess.PIPE,
            pass_fds=(*settings.listen_fds, settings.link_fd),
        )
        assert proc.stdin is not None
        proc.stdin.write(pickle.dumps(settings))
        proc.stdin.close()
        return proc

    def log_dropped(self) -> dict[str, tuple[int, int]]:
        """Guest log (lines, bytes) dropped per module by every worker, past ones too."""
        return self.logs.dropped(self._workers.values())

    async def _forget(self, worker: WorkerProcess) -> None:
        if self._workers.get(worker.index) is worker:
            del self._workers[worker.index]
        self.logs.retire(worker)
        worker.writer.close()
        if worker.reader_task is not None:
            worker.reader_task.cancel()
            await asyncio.wait([worker.reader_task])
        for ack in worker.acks.values():
            if not ack.done():
                ack.set_exception(WorkerLinkError(f"worker {worker.index} exited"))
                # Marked read: not every ack has a waiter (a spare's module loads
                # are only polled, `loading`), and an unread one was logged as
                # "Future exception was never retrieved" (seen in CI, a spare that
                # died at start). Whoever awaits one still gets the error.
                ack.exception()
        if worker.commits:
            # Their writes commit whatever happened to the worker: wait, so close()
            # never closes the store under them.
            await asyncio.wait(worker.commits)

    # --- messages from a worker ---------------------------------------------------

    async def _serve(self, worker: WorkerProcess, reader: asyncio.StreamReader) -> None:
        frames = FrameReader(reader)
        try:
            while (messages := await frames.batch()) is not None:
                writes = [m for m in messages if m["t"] == "w"]
                if writes:
                    self._writes.add(worker, writes)
                for message in messages:
                    self._handle(worker, message)
        except (WorkerLinkError, ConnectionError) as exc:
            log.error("invocation worker %d: %s; stopping it", worker.index, exc)
            with contextlib.suppress(ProcessLookupError):
                worker.proc.kill()

    def _handle(self, worker: WorkerProcess, message: dict[str, Any]) -> None:
        kind = message["t"]
        if kind == "r":
            answered = record_report(self.metrics, message)
            self.served[worker.index] = self.served.get(worker.index, 0) + answered
            if "logs" in message:
                worker.logs = {str(m): (int(r), int(b)) for m, (r, b) in message["logs"].items()}
        elif kind == "lq":
            worker.send(self.logs.answer(message))
        elif kind == "ack":
            ack = worker.acks.pop(message.get("id", -1), None)
            if ack is not None and not ack.done():
                ack.set_result(message)
        elif kind == "ready":
            worker.ready.set()

    # --- modules ------------------------------------------------------------------

    async def sync_modules(self) -> None:
        """Bring every worker to the node's trust policy and running modules.

        Returns once each live worker acknowledged, so a deploy answered 200 is
        served by every worker.
        """
        async with self._lock:
            waits = [ack for w in self._all() for ack in self._send_modules(w)]
        if not waits:
            return
        done, pending = await asyncio.wait(waits, timeout=ACK_TIMEOUT_S)
        for ack in pending:
            ack.cancel()
        for ack in done:
            if ack.exception() is None and not ack.result().get("ok"):
                log.error("an invocation worker refused a module: %s", ack.result().get("error"))

    def _send_modules(self, worker: WorkerProcess) -> list[asyncio.Future[dict[str, Any]]]:
        sent: list[asyncio.Future[dict[str, Any]]] = []
        policy = self.runtime.policy
        if worker.policy is not policy:  # a reload replaces the runtime's policy object
            sent.append(self._request(worker, {"t": "policy", "policy": pickle.dumps(policy)}))
            worker.policy = policy
        wanted = self._bundles()
        for name in [n for n in worker.have if n not in wanted]:
            sent.append(self._request(worker, {"t": "unload", "name": name}))
            del worker.have[name]
        for name, (digest, wasm, manifest, signature) in sorted(wanted.items()):
            if worker.have.get(name) != digest:
                message = {"t": "load", "name": name, "wasm": wasm, "manifest": manifest}
                message["signature"] = signature
                sent.append(self._request(worker, message))
                worker.have[name] = digest
        return sent

    def _request(
        self, worker: WorkerProcess, message: dict[str, Any]
    ) -> asyncio.Future[dict[str, Any]]:
        self._next_id += 1
        message["id"] = self._next_id
        ack = worker.acks[self._next_id] = asyncio.get_running_loop().create_future()
        worker.send(message)
        return ack

    # --- metrics ------------------------------------------------------------------
