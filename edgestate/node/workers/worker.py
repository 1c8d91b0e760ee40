"""One invocation worker process: its own runtime, a read-only store, one link.

    python -m edgestate.node.workers.main      (started by the node's WorkerPool)

It serves ``POST /v1/invoke/{module}`` itself on the API socket it inherited,
hands ``/yjs`` WebSocket connections to the node (:mod:`.handoff`) and relays
every other route to the node (:mod:`.proxy`). Reads go straight to the
LMDB map through a read-only environment of its own; each invocation's staged
writes go to the node as one ``w`` message and the answer comes after the
durable group commit, so a 200 still means fsynced. It never imports the sync
daemon, and it exits when its socket to the node closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pickle
import signal
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiohttp import web

from edgestate import errors as E
from edgestate.node.api.certified import api_tls_context
from edgestate.node.api.invoke import InvocationRoutes
from edgestate.node.api.observe import REQUEST_ID_KEY, observed
from edgestate.node.api.responses import error_reply, error_response
from edgestate.node.config import ApiConfig
from edgestate.node.logs import REQUEST_ID_HEADER
from edgestate.node.workers.handoff import YjsHandoff
from edgestate.node.workers.heartbeat import NodeHeartbeat
from edgestate.node.workers.label import set_worker_label
from edgestate.node.workers.process import WorkerSettings
from edgestate.node.workers.protocol import FrameReader, Outbox, encode_ops
from edgestate.node.workers.proxy import NodeProxy
from edgestate.runtime import InvocationResult, Runtime, TrustPolicy
from edgestate.store import Store, WriteOp

log = logging.getLogger("edgestate.worker")


class Worker:
    """What the invocation route needs (the ``Invocations`` protocol), in a worker."""

    def __init__(self, settings: WorkerSettings) -> None:
        self.settings = settings
        self._loop = asyncio.get_running_loop()
        # A spare learns its index with `go` (the index of the worker it replaces).
        self.index = settings.index
        self.store = Store.open(settings.store_dir, settings.store, readonly=True)
        # Guest log budgets are the node's, granted to each worker (logshare).
        self.runtime = Runtime(
            self.store, TrustPolicy([]), settings.runtime, log_grants=self._ask_log
        )
        self.ready = False
        self.draining = False
        self._writer: asyncio.StreamWriter | None = None
        self._outbox: Outbox | None = None
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._next_id = 0
        self._go = asyncio.Event()
        self._log_asks: dict[str, int] | None = {}  # until `go`: see _request_log
        self._gone = asyncio.Event()
        self.heartbeat = NodeHeartbeat(lambda: not self._gone.is_set())
        self._invocations: list[list[Any]] = []
        self._http_errors: list[str] = []
        self._requests: list[tuple[str, str, int, float]] = []
        self._logs_sent: dict[str, tuple[int, int]] = {}

    @property
    def api_config(self) -> ApiConfig:
        return self.settings.api

    # --- the link to the node -----------------------------------------------------

    async def connect(self) -> None:
        """Start reading the node's messages from the inherited socket."""
        sock = socket.socket(fileno=self.settings.link_fd)
        reader, self._writer = await asyncio.open_unix_connection(sock=sock, limit=1 << 16)
        self._outbox = Outbox(self._writer, before_flush=self._flush)
        self._reader_task = asyncio.create_task(self._read(reader))

    async def _read(self, reader: asyncio.StreamReader) -> None:
        frames = FrameReader(reader)  # a group commit's answers come in one read
        try:
            while (messages := await frames.batch()) is not None:
                for message in messages:
                    self._handle(message)
        except (E.WorkerLinkError, ConnectionError) as exc:
            log.error("worker %d: link to the node failed: %s", self.index, exc)
        finally:
            self._gone.set()
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(E.WorkerLinkError("the node closed the worker socket"))

    def _handle(self, message: dict[str, Any]) -> None:
        kind = message["t"]
        if kind == "wr":
            future = self._pending.pop(message.get("id", -1), None)
            if future is not None and not future.done():
                future.set_result(message)
        elif kind == "hb":
            self.heartbeat.beat()
        elif kind == "lg":
            self.runtime.grant_log(str(message.get("m")), int(message.get("b", 0)))
        elif kind == "go":
            self.index = int(message.get("index", self.index))
            set_worker_label(str(self.index))
            self._go.set()
            asks, self._log_asks = self._log_asks or {}, None
            for module, nbytes in asks.items():
                self._request_log(module, nbytes)
        else:
            self._control(message)

    def _control(self, message: dict[str, Any]) -> None:
        # Applied in order, on this loop: an invocation sees the module set of
        # the last message before it, never a half-applied one.
        answer: dict[str, Any] = {"t": "ack", "id": message.get("id"), "ok": True}
        try:
            kind, name = message["t"], message.get("name", "")
            if kind == "policy":
                policy = pickle.loads(message["policy"])
                assert isinstance(policy, TrustPolicy)
                self.runtime.policy = policy
            elif kind == "load":
                # The node already decided this module runs (ownership included).
                self.runtime.owners.pop(name, None)
                self.runtime.load(message["wasm"], message["manifest"], message["signature"])
            elif kind == "unload":
                if name in {m.name for m in self.runtime.modules()}:
                    self.runtime.unload(name)
                self.runtime.release(name)
        except E.EdgestateError as exc:
            log.error(
                "worker %d: %s of %r failed: %s",
                self.index,
                message["t"],
                message.get("name"),
                exc,
            )
            answer.update(ok=False, error=f"{exc.code}: {exc}")
        self._send(answer)

    def _ask_log(self, module: str, nbytes: int) -> None:
        # Called on an invocation thread (a guest logging), or on this loop at a load.
        self._loop.call_soon_threadsafe(self._request_log, module, nbytes)

    def _request_log(self, module: str, nbytes: int) -> None:
        if self._log_asks is not None:
            # Not serving yet (a spare): its first batches would sit idle, out of
            # the budget of the workers that serve. Asked for on `go`.
            self._log_asks[module] = nbytes
            return
        with contextlib.suppress(E.WorkerLinkError):
            self._send({"t": "lq", "m": module, "b": nbytes})  # gone: so is any budget

    def _send(self, message: dict[str, Any]) -> None:
        if self._writer is None or self._outbox is None or self._writer.is_closing():
            raise E.WorkerLinkError("the worker socket to the node is closed")
        self._outbox.send(message)

    async def commit(self, ops: Sequence[WriteOp]) -> dict[str, Any]:
        """Send one invocation's writes to the node; its answer after the fsync."""
        self._next_id += 1
        future = self._pending[self._next_id] = asyncio.get_running_loop().create_future()
        self._send({"t": "w", "id": self._next_id, "ops": encode_ops(ops)})
        answer: dict[str, Any] = await future
        return answer

    # --- what the invocation route asks -------------------------------------------

    async def invoke(
        self,
        name: str,
        body: bytes,
        *,
        gone: Callable[[], bool] | None = None,
        arrived_ns: int | None = None,
    ) -> InvocationResult:
        try:
            # Admitted and on the invocation threads, as in the node (runtime.admission):
            # the loop keeps relaying admin, health and /yjs while a guest runs.
            execution = await self.runtime.arun(name, body, gone=gone, arrived_ns=arrived_ns)
            commit_ns = 0
            if execution.ops:
                start = time.perf_counter_ns()
                answer = await self.commit(execution.ops)
                commit_ns = time.perf_counter_ns() - start
                if not answer.get("ok"):
                    raise E.InvocationError(
                        f"module {name!r} succeeded but its writes were refused: "
                        f"{answer.get('message')}"
                    )
        except E.EdgestateError as exc:
            self._report([name, exc.code])
            raise
        result = InvocationResult(
            name,
            execution.output,
            0,
            execution.fuel_used,
            execution.instantiate_ns,
            execution.execute_ns,
            commit_ns,
            len(execution.ops),
            execution.host_calls,
        )
        self._report(
            [name, "ok", result.instantiate_ns, result.execute_ns, commit_ns, result.host_calls]
        )
        return result

    def count_http_error(self, code: str) -> None:
        self._http_errors.append(code)
        self._schedule_flush()

    def count_request(self, route: str, method: str, status: int, seconds: float) -> None:
        # Reported to the node, whose NodeMetrics is the one count (edgestate_http_*).
        self._requests.append((route, method, status, seconds))
        self._schedule_flush()

    def render_metrics(self) -> bytes:
        raise AssertionError("a worker relays /metrics to the node")  # never routed here

    def _report(self, row: list[Any]) -> None:
        self._invocations.append(row)
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        # One report per turn of the loop, however many invocations it finished,
        # written with that turn's `w` messages (the outbox calls _flush first).
        if self._outbox is not None:
            self._outbox.schedule()

    def _flush(self) -> None:
        if not (self._invocations or self._http_errors or self._requests):
            return  # a turn that only sent writes or control answers
        message: dict[str, Any] = {"t": "r", "inv": self._invocations, "http": self._http_errors}
        if self._requests:
            message["req"] = self._requests
        self._invocations, self._http_errors, self._requests = [], [], []
        # The node grants each module's budget to all workers (logshare) and sums these.
        logs = {b.module: (b.dropped_records, b.dropped_bytes) for b in self.runtime.log_budgets()}
        if logs != self._logs_sent:
            message["logs"] = self._logs_sent = logs
        assert self._outbox is not None
        # Queued straight into this flush's frames (not send(): that would
        # schedule one more flush for nothing). A closed link drops it there.
        self._outbox.queue(message)

    # --- serving ------------------------------------------------------------------

    async def serve(self) -> None:
        """Serve the API socket until SIGTERM or the node's socket closes."""
        await self.connect()
        await asyncio.wait(
            [asyncio.ensure_future(self._go.wait()), asyncio.ensure_future(self._gone.wait())],
            return_when=asyncio.FIRST_COMPLETED,
        )
        if self._gone.is_set():
            return
        proxy = NodeProxy(self.settings.node_socket)
        runner = web.AppRunner(
            self._app(proxy),
            handle_signals=False,
            access_log=None,
            shutdown_timeout=self.settings.api.shutdown_grace_s,
        )
        await runner.setup()
        # api.tls: this worker's own context from the cluster files' paths (a
        # worker handshakes its own connections; the node never sends key bytes).
        tls = self.settings.tls
        ssl_context = api_tls_context(tls) if tls is not None else None
        await web.SockSite(runner, self._listener(), ssl_context=ssl_context).start()
        self.ready = True
        self._send({"t": "ready", "pid": os.getpid()})
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        stopping = asyncio.ensure_future(stop.wait())
        gone = asyncio.ensure_future(self._gone.wait())
        await asyncio.wait([stopping, gone], return_when=asyncio.FIRST_COMPLETED)
        self.ready, self.draining = False, True
        await runner.cleanup()  # stops accepting; in-flight requests finish
        await proxy.close()
        self.runtime.close()
        self.store.close()

    def _listener(self) -> socket.socket:
        """The API socket this worker accepts on: its index's (api.reuse_port; a
        spare was given every index's), else the shared one. The others it holds
        are closed: their queues are other workers' (the node keeps them open)."""
        fds = self.settings.listen_fds
        mine = fds[self.index] if len(fds) > 1 else fds[0]
        for fd in fds:
            if fd != mine:
                os.close(fd)
        return socket.socket(fileno=mine)

    def _app(self, proxy: NodeProxy) -> web.Application:
        api = self.settings.api
        # No app middleware and no on_response_prepare signal: each route is
        # wrapped once here, so an invocation pays for neither aiohttp's middleware
        # chain nor a signal dispatch (docs/workers.md, "Where a request's time goes").
        app = web.Application(client_max_size=max(api.max_body_bytes, api.max_admin_body_bytes))
        own = _OwnRoutes(self)
        app.add_routes(
            [
                web.post("/v1/invoke/{module}", own.wrap(InvocationRoutes(self).invoke)),
                # Answered here, not relayed: see heartbeat (the node's liveness).
                web.get("/healthz", own.wrap(self.heartbeat.healthz)),
                # Handed to the node, which serves the connection from then on.
                web.get(
                    "/yjs/{tail:.*}",
                    own.relayed(YjsHandoff(self.settings.node_socket, proxy).handle),
                ),
                web.route("*", "/{tail:.*}", own.relayed(proxy.handle)),
            ]
        )
        return app


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class _OwnRoutes:
    """What the node's middleware does, for the routes a worker answers itself:
    the request id (kept in the context for every log line, echoed), the metrics
    row, the access line, the JSON error shape, and which worker answered.
    Relayed routes get the error shape only: the node gives those their id,
    counts and logs them."""

    def __init__(self, worker: Worker) -> None:
        self._worker = worker
        self._access = worker.settings.api.access_log

    def wrap(self, handler: Handler) -> Handler:
        worker, access, answer = self._worker, self._access, self._answer

        async def served(request: web.Request) -> web.StreamResponse:
            try:
                response = await observed(request, handler, answer, worker.count_request, access)
            except web.HTTPException as exc:  # sent by aiohttp: echo the id on it too
                exc.headers[REQUEST_ID_HEADER] = request[REQUEST_ID_KEY]
                raise
            if not response.prepared:
                headers = response.headers
                headers[REQUEST_ID_HEADER] = request[REQUEST_ID_KEY]
                # Which worker ran it: for operators reading a slow request, and tests.
                # (worker.index, not the settings': a spare learns its index on `go`)
                headers["X-Edgestate-Worker"] = str(worker.index)
            return response

        return served

    def relayed(self, handler: Handler) -> Handler:
        answer = self._answer

        async def relay(request: web.Request) -> web.StreamResponse:
            return await answer(request, handler)

        return relay

    async def _answer(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            response: web.StreamResponse = await handler(request)
        except E.EdgestateError as exc:
            self._worker.count_http_error(exc.code)
            response = error_reply(exc)
        except web.HTTPRequestEntityTooLarge as exc:
            self._worker.count_http_error("body_too_large")
            response = error_response(413, "body_too_large", exc.text or "request body too large")
        return response
