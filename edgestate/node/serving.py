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
from edgestate.node.api.certified import api_tls_context
from edgestate.node.config import NodeConfig
from edgestate.node.metrics import NodeMetrics
from edgestate.node.registry import ModuleRegistry
from edgestate.node.workers import WorkerPool
from edgestate.runtime import Runtime
from edgestate.store import Store

__all__ = [
    "api_ssl_context",
    "serve_in_process",
    "serve_through_workers",
    "uses_workers",
    "worker_pool",
]

log = logging.getLogger(__name__)


def uses_workers(config: NodeConfig) -> bool:
    """Whether invocations run in worker processes (with ``api.tls`` too: each
    worker terminates TLS itself, edgestate.node.api.certified)."""
    return config.api.workers > 0


def api_ssl_context(config: NodeConfig) -> ssl.SSLContext | None:
    """The API's TLS context with the cluster's certificates (None: plain HTTP)."""
    tls_files = config.sync.tls
    if not config.api.tls or tls_files is None:
        return None
    return api_tls_context(tls_files)


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
        tls=config.sync.tls if config.api.tls else None,
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
