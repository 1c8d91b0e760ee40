"""The composition root: one node = store + runtime + module registry + sync + API.

    async with Node(load_config(path)) as node:
        await node.wait_closed()

Only this module wires the layers together; each layer knows nothing of the ones
above it. Start order is bottom-up and close order top-down: the API stops
accepting and lets in-flight requests finish first, the store closes last, after
everything that writes to it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import TracebackType
from typing import Any

from aiohttp import web

from edgestate import __version__
from edgestate.errors import EdgestateError, StoreCorruptError
from edgestate.node.api import build_app
from edgestate.node.api.yjs_auth import yjs_authorizer
from edgestate.node.client_tokens import ClientTokens
from edgestate.node.cluster_rows import member_rows, peer_rows
from edgestate.node.config import ApiConfig, NodeConfig
from edgestate.node.dashboard import NodeDashboard
from edgestate.node.datadir import check_data_dir
from edgestate.node.diagnostics import diagnose
from edgestate.node.metrics import NodeMetrics, gc_metrics, guest_log_metrics, layer_metrics
from edgestate.node.module_rows import module_rows
from edgestate.node.nats_metrics import nats_metrics
from edgestate.node.node_files import (
    CACHE_KEY_FILE,
    TOKEN_FILE,
    ensure_cache_key,
    ensure_token,
    prepare_data_dir,
)
from edgestate.node.registry import ModuleRegistry
from edgestate.node.serving import (
    serve_in_process,
    serve_through_workers,
    uses_workers,
    worker_pool,
)
from edgestate.node.trust import load_policy_file, reload_policy
from edgestate.node.workers import Adopter, WorkerPool, handoff_path
from edgestate.runtime import InvocationResult, LoadedModule, Runtime, TrustPolicy
from edgestate.store import ChangeStream, Store, verify_in_child
from edgestate.sync.daemon import SyncDaemon
from edgestate.sync.yjs import YjsEndpoint

log = logging.getLogger(__name__)

# Beyond the grace period for in-flight requests, what one closing part may take.
CLOSE_PHASE_SLACK_S = 5.0


class Node:
    """A running edgestate node; see the module docstring."""

    def __init__(self, config: NodeConfig, *, new_store: bool = False) -> None:
        self.config = config
        # An explicit request to begin with an empty store where a node's is gone.
        self.new_store = new_store
        self.metrics = NodeMetrics()
        self.watchers: set[ChangeStream] = set()
        self.ready = False
        self.draining = False
        self.started_at = time.time()
        self.api_port: int | None = None
        self._closed = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._store: Store | None = None
        self._runtime: Runtime | None = None
        self._registry: ModuleRegistry | None = None
        self._sync: SyncDaemon | None = None
        self._yjs: YjsEndpoint | None = None
        self._tokens: ClientTokens | None = None
        self.dashboard: NodeDashboard | None = None  # its node record and overview
        self.workers: WorkerPool | None = None  # None: invocations run in this process
        self._handoff: Adopter | None = None  # takes /yjs connections from the workers
        self.admin_token = ""

    # --- parts (available after start) ----------------------------------------------

    @property
    def store(self) -> Store:
        """The node's store."""
        assert self._store is not None, "node not started"
        return self._store

    @property
    def runtime(self) -> Runtime:
        """The node's wasm runtime."""
        assert self._runtime is not None, "node not started"
        return self._runtime

    @property
    def registry(self) -> ModuleRegistry:
        """Deployed modules and what this node did with each."""
        assert self._registry is not None, "node not started"
        return self._registry

    @property
    def sync(self) -> SyncDaemon:
        """The peer sync daemon."""
        assert self._sync is not None, "node not started"
        return self._sync

    @property
    def yjs(self) -> YjsEndpoint:
        """The y-websocket endpoint mounted at ``/yjs/{doc}``."""
        assert self._yjs is not None, "node not started"
        return self._yjs

    @property
    def tokens(self) -> ClientTokens:
        """This node's client tokens (scoped ``/yjs`` credentials)."""
        assert self._tokens is not None, "node not started"
        return self._tokens

    @property
    def token_path(self) -> Path:
        """Where the admin token lives."""
        return self.config.data_dir / TOKEN_FILE

    @property
    def api_config(self) -> ApiConfig:
        """The HTTP API's settings."""
        return self.config.api

    @property
    def replica_id(self) -> int:
        """This node's replica (CRDT client) id, as the sync layer's frontier knows it."""
        return self.sync.frontier.me

    @property
    def api_url(self) -> str:
        """Base URL of the HTTP API."""
        scheme = "https" if self.config.api.tls else "http"
        return f"{scheme}://{self.config.api.host}:{self.api_port}"

    # --- lifecycle ------------------------------------------------------------------

    async def __aenter__(self) -> Node:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def start(self) -> None:
        """Open the store, load modules, start sync and the API; then ready."""
        cfg = self.config
        prepare_data_dir(cfg.data_dir)
        # A damaged token or cache key is named first, whatever else is wrong.
        for name, check in ((TOKEN_FILE, ensure_token), (CACHE_KEY_FILE, ensure_cache_key)):
            if (cfg.data_dir / name).is_file():
                check(cfg.data_dir)
        create = check_data_dir(cfg.data_dir, new_store=self.new_store)
        if not create:
            await self._check_store()
        try:
            # The store first: a directory with a token but no store is one whose
            # store was lost, never one a start left half-made.
            self._store = Store.open(cfg.store_dir, cfg.store, create=create)
            self.admin_token = ensure_token(cfg.data_dir)
            runtime_config = dataclasses.replace(
                cfg.runtime, cache_key=ensure_cache_key(cfg.data_dir)
            )
            self._runtime = Runtime(self._store, self._load_policy(), runtime_config)
            self._registry = ModuleRegistry(
                self._store,
                self._runtime,
                self.metrics,
                keep=cfg.module_history,
                node_name=lambda: self.sync.node_id,
            )
            await self._registry.start()
            self._sync = SyncDaemon(self._store, cfg.sync)
            await self._sync.start()
            self._tokens = ClientTokens(
                self._store, lambda token_id: self.yjs.end_access(token_id, "token revoked")
            )
            self._yjs = YjsEndpoint(
                self._store, authorize=yjs_authorizer(self.admin_token, self._tokens)
            )
            await self._yjs.start()
            self.metrics.add_collector(lambda: layer_metrics(self.store, self.sync))
            self.metrics.add_collector(lambda: nats_metrics(self.sync.nats))
            self.metrics.add_collector(
                lambda: guest_log_metrics(
                    self.runtime.log_budgets(), self.workers.log_dropped() if self.workers else None
                )
            )
            # Garbage collection figures, read at scrape time like layer_metrics': collected
            # items from the store, members from the sync daemon's frontier tracker.
            self.metrics.add_collector(
                lambda: gc_metrics(
                    ((d, self.store.gc_status(d).collected_items) for d in self.store.documents()),
                    len(self.sync.frontier.members),
                )
            )
            self._runner = web.AppRunner(
                build_app(self),
                handle_signals=False,
                access_log=None,
                shutdown_timeout=cfg.api.shutdown_grace_s,
            )
            await self._runner.setup()
            self.dashboard = NodeDashboard(self)  # answers overviews from the first request
            await self._serve_api()
            await self.dashboard.start()
        except BaseException:
            await self.close()
            raise
        self.ready = True
        log.info(
            "node ready: api %s, sync port %s, data %s", self.api_url, self._sync.port, cfg.data_dir
        )

    async def _serve_api(self) -> None:
        cfg = self.config
        assert self._runner is not None
        if not uses_workers(cfg):
            self.api_port = await serve_in_process(self._runner, cfg)
            return
        # Held before it starts: a start failing part way still closes the pool.
        self.workers = worker_pool(cfg, self.store, self.runtime, self.metrics, self.registry)
        self._handoff = Adopter(
            self._runner, handoff_path(self.workers.node_socket), cfg.api.shutdown_grace_s
        )
        await self._handoff.start()  # before any worker accepts a /yjs client
        self.api_port = await serve_through_workers(self._runner, self.workers, self.registry)

    async def _check_store(self) -> None:
        # A walk of every table before LMDB serves from it, in a child process:
        # a damaged page can make LMDB abort the process that reads it, and the
        # node must refuse with a message instead (measured: 0.11-0.16 s for a
        # 9 MB store of 44,000 keys, most of it the child's start).
        problems = await asyncio.to_thread(verify_in_child, self.config.store_dir, decode=False)
        if problems:
            raise StoreCorruptError(
                f"the store in {self.config.store_dir} is damaged: {'; '.join(problems[:3])}. "
                "Run `edgestate inspect --data DIR verify` for the full list, and restore "
                "from a backup (README, backup and restore)"
            )

    def _load_policy(self) -> TrustPolicy:
        return load_policy_file(self.config.policy_path)

    async def reload_trust_policy(self) -> dict[str, Any]:
        """Reread the trust policy file and recheck every module (see node/trust.py)."""
        return await reload_policy(self.config.policy_path, self.runtime, self.registry)

    async def close(self) -> None:
        """Stop accepting, finish in-flight requests, then close sync, runtime, store."""
        if self._closed.is_set():
            return
        self.ready = False
        self.draining = True
        for stream in list(self.watchers):
            stream.close()
        if self.dashboard is not None:
            await self._phase("node record", self.dashboard.close())
        if self._yjs is not None:
            # its websockets would hold the runner's cleanup
            await self._phase("y-websocket endpoint", self._yjs.close())
        if self.workers is not None:
            # first: their in-flight invocations still write through this process
            await self._phase("invocation workers", self.workers.close())
        if self._handoff is not None:
            # after the workers: none is left to hand a connection over
            await self._phase("/yjs handoff", self._handoff.close())
        if self._runner is not None:
            # waits for in-flight handlers, up to shutdown_grace_s
            await self._phase("HTTP API", self._runner.cleanup())
            self._runner = None
        if self._registry is not None:
            await self._phase("module registry", self._registry.close())
        if self._sync is not None:
            await self._phase("sync daemon", self._sync.close())
        if self._runtime is not None:
            self._runtime.close()
        if self._store is not None:
            await asyncio.to_thread(self._store.close)  # flushes; may fsync
        self._closed.set()
        log.info("node stopped")

    async def _phase(self, what: str, closing: Awaitable[None]) -> None:
        # A part that does not close in time must not keep the store from being
        # flushed and closed; say which one it was.
        log.debug("closing %s", what)
        try:
            async with asyncio.timeout(self.config.api.shutdown_grace_s + CLOSE_PHASE_SLACK_S):
                await closing
        except TimeoutError:
            log.error(
                "closing the %s took over %.0f s; going on without it",
                what,
                self.config.api.shutdown_grace_s + CLOSE_PHASE_SLACK_S,
            )

    async def wait_closed(self) -> None:
        """Wait until :meth:`close` has finished."""
        await self._closed.wait()

    # --- operations -----------------------------------------------------------------

    async def invoke(
        self,
        name: str,
        body: bytes,
        *,
        gone: Callable[[], bool] | None = None,
        arrived_ns: int | None = None,
    ) -> InvocationResult:
        """Run a module once; record its outcome and timings (``gone``, ``arrived_ns``:
        see Runtime.ainvoke)."""
        try:
            result = await self.runtime.ainvoke(name, body, gone=gone, arrived_ns=arrived_ns)
        except EdgestateError as exc:
            self.metrics.failed(name, exc)
            raise
        self.metrics.invoked(result)
        return result

    def count_http_error(self, code: str) -> None:
        """Count one API request answered with error ``code``."""
        self.metrics.http_errors.labels(code).inc()

    def count_request(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count one answered API request (edgestate_http_requests_total)."""
        self.metrics.http.observe(route, method, status, seconds)

    def render_metrics(self) -> bytes:
        """The Prometheus text exposition of this node's metrics."""
        return self.metrics.render()

    def open_watch(self, maxsize: int) -> ChangeStream:
        """A store change stream, counted in ``watchers`` (and closed at shutdown)."""
        stream = self.store.changes(maxsize=maxsize)
        self.watchers.add(stream)
        return stream

    def close_watch(self, stream: ChangeStream) -> None:
        """Close a stream from :meth:`open_watch`."""
        stream.close()
        self.watchers.discard(stream)

    def yjs_routes(self) -> list[web.RouteDef]:
        """The y-websocket endpoint's routes."""
        return self.yjs.routes()

    async def deploy(
        self, wasm: bytes, manifest: bytes, signature: bytes, *, allow_downgrade: bool = False
    ) -> LoadedModule:
        """Verify and load a bundle here, then store it so it replicates (see registry)."""
        return await self.registry.deploy(
            wasm, manifest, signature, allow_downgrade=allow_downgrade
        )

    async def rollback_module(self, name: str, version: str | None) -> LoadedModule:
        """Make a kept version of ``name`` active again cluster-wide (see registry)."""
        return await self.registry.rollback(name, version)

    async def remove_module(self, name: str) -> None:
        """Remove a module cluster-wide (ModuleNotFoundError_ if unknown)."""
        await self.registry.remove(name)

    async def nats_status(self) -> dict[str, Any]:
        """The NATS link between sites: servers, stream lag per document, bytes (JSON-ready)."""
        return {"enabled": False} if self.sync.nats is None else await self.sync.nats.status()

    def members(self) -> dict[str, Any]:
        """Cluster members garbage collection waits for, and those forgotten (JSON-ready)."""
        return member_rows(self.sync)

    async def forget_member(self, replica: int) -> bool:
        """Stop waiting for member ``replica`` (and refuse it as stale); was it one?"""
        return await self.sync.forget_member(replica)

    def peer_rows(self) -> list[dict[str, Any]]:
        """Peers with connection state, last sync and lag (JSON-ready)."""
        return peer_rows(self.sync)

    async def diagnostics(self) -> dict[str, Any]:
        """What the doctor checks, with its findings (see node/diagnostics.py)."""
        return await diagnose(self)

    def module_rows(self) -> list[dict[str, Any]]:
        """Deployed modules, this node's verdict on each and their history (JSON-ready)."""
        return module_rows(self.runtime, self.registry)

    def overview(self, query: dict[str, str]) -> dict[str, Any]:
        """What the dashboard shows (node/overview.py); needs a started node."""
        assert self.dashboard is not None, "node not started"
        return self.dashboard.overview(query)

    def status(self) -> dict[str, Any]:
        """Node identity, uptime, and a summary of each layer (JSON-ready)."""
        peers = self.sync.peers()
        refused = [r for r in self.module_rows() if r["state"] == "refused"]
        return {
            "version": __version__,
            "node_id": self.sync.node_id,
            "cluster_id": self.sync.cluster_id,
            "insecure": self.config.sync.insecure,
            "api": self.api_url,
            "sync_port": self.sync.port,
            "uptime_s": round(time.time() - self.started_at, 3),
            "ready": self.ready,
            "documents": len(self.store.documents()),
            "modules": len(self.runtime.modules()),
            "refused_modules": refused,
            "peers": len(peers),
            "connected_peers": len(self.sync.connected()),
            "watchers": len(self.watchers),
            "store": self.store.stats(),
        }
