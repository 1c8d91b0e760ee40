"""How the node's HTTP API listens: one TCP site in the node process, or
invocation worker processes accepting on the API port (``node/workers``) while
the node answers what they relay (admin, ``/metrics``, health) on a private
unix socket and serves the ``/yjs`` connections they hand it (``node/workers``:
``handoff``, ``adopt``).

``Node`` decides and owns what is made here: it holds the worker pool before the
pool starts, so a start that fails part way still closes it.
"""

from __future__ import annotations

import logging
import ssl

from aiohttp import web

from edgestate.errors import ListenError
from edgestate.node.config import NodeConfig
from edgestate.node.metrics import NodeMetrics
from edgestate.node.registry import ModuleRegistry
from edgestate.node.workers import WorkerPool
from edgestate.runtime import Runtime
from edgestate.store import Store
from edgestate.sync.tls import server_context

__all__ = [
    "api_ssl_context",
    "serve_in_process",
    "serve_through_workers",
    "uses_workers",
    "worker_pool",
]

log = logging.getLogger(__name__)


def uses_workers(config: NodeConfig) -> bool:
    """Whether invocations run in worker processes (never with ``api.tls``: said
    once, at start, when both are asked for)."""
    if config.api.workers and config.api.tls:
        log.warning("api.tls: invocations run in the node process (workers serve plain HTTP)")
    return config.api.workers > 0 and not config.api.tls


def api_ssl_context(config: NodeConfig) -> ssl.SSLContext | None:
    """The API's TLS context with the cluster's certificates (None: plain HTTP)."""
    tls_files = config.sync.tls
    if not config.api.tls or tls_files is None:
        return None
    ctx = server_context(tls_files)
    # Token users have no certificate; a certificate, if presented, must be
    # valid for the cluster (the handshake fails otherwise).
    ctx.verify_mode = ssl.CERT_OPTIONAL
    return ctx


async def serve_in_process(runner: web.AppRunner, config: NodeConfig) -> int:
    """Listen on the API host and port in this process; the port bound."""
    api = config.api
    site = web.TCPSite(runner, api.host, api.port, ssl_context=api_ssl_context(config))
    try:
        await site.start()
    except OSError as exc:
        raise ListenError.from_os_error("API", api.host, api.port, exc) from exc
    return int(runner.addresses[0][1])


def worker_pool(
    config: NodeConfig,
    store: Store,
    runtime: Runtime,
    metrics: NodeMetrics,
    registry: ModuleRegistry,
) -> WorkerPool:
    """The invocation workers, not started (``serve_through_workers`` starts them)."""
    return WorkerPool(
        config.api.workers,
        config.api,
        store,
        runtime,
        metrics,
        lambda: dict(registry.running),
        log_level=config.log_level,
        log_format=config.log_format,
    )


async def serve_through_workers(
    runner: web.AppRunner, pool: WorkerPool, registry: ModuleRegistry
) -> int:
    """Answer the workers' relayed requests on their unix socket, keep them told of
    module changes, and start them on the API port; the port bound."""
    await web.UnixSite(runner, pool.node_socket).start()
    registry.listeners.append(pool.sync_modules)
    await pool.start()
    return pool.port
