"""What the HTTP API needs of a node, as protocols the routes are written against.

The routes never see the node's parts (store aside, whose public type is the
API's subject): they ask these questions and the node answers them, so the node
may rewire its layers without touching a route. One protocol per subject, so a
route module names only what it uses; :class:`NodeApi` is all of them, what
:func:`~edgestate.node.api.build_app` takes.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from aiohttp import web

    from edgestate.node.client_tokens import ClientTokens
    from edgestate.node.config import ApiConfig
    from edgestate.runtime import InvocationResult, LoadedModule
    from edgestate.store import ChangeStream, Store


class CountsErrors(Protocol):
    """Where API error answers are counted (``edgestate_http_errors``)."""

    def count_http_error(self, code: str) -> None:
        """Count one request answered with error ``code``."""

    def count_request(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count one answered request of route template ``route`` and its latency."""


class Guarded(CountsErrors, Protocol):
    """What the admin-token check needs."""

    @property
    def admin_token(self) -> str:
        """The bearer token admin routes require."""

    @property
    def token_path(self) -> Path:
        """Where the admin token lives (named in 401 answers)."""

    @property
    def api_config(self) -> ApiConfig:
        """The HTTP API's settings (``access_log`` among them)."""


class Invocations(CountsErrors, Protocol):
    """Invocation, health and metrics routes."""

    @property
    def api_config(self) -> ApiConfig:
        """The API's settings (body limits, watch ping interval)."""

    @property
    def ready(self) -> bool:
        """Started and not closing."""

    @property
    def draining(self) -> bool:
        """Closing: new invocations are refused."""

    async def invoke(
        self,
        name: str,
        body: bytes,
        *,
        gone: Callable[[], bool] | None = None,
        arrived_ns: int | None = None,
    ) -> InvocationResult:
        """Run module ``name`` once on ``body``; its outcome is counted in the metrics.

        ``gone``: whether the client has disconnected (a queued invocation is then dropped).
        ``arrived_ns``: when the request arrived (``time.monotonic_ns()``), where its
        wall-time budget starts (Runtime.arun).
        """

    def render_metrics(self) -> bytes:
        """The Prometheus text exposition of the node's metrics."""


class Documents(Protocol):
    """Admin routes over documents: keys, batches, scans, watches."""

    @property
    def api_config(self) -> ApiConfig:
        """The API's settings (body limits, watch ping interval)."""

    @property
    def store(self) -> Store:
        """The node's store."""

    def open_watch(self, maxsize: int) -> ChangeStream:
        """A change stream counted among the node's watchers until :meth:`close_watch`."""

    def close_watch(self, stream: ChangeStream) -> None:
        """Close a stream from :meth:`open_watch` and stop counting it."""


class Cluster(Protocol):
    """Admin routes over the node itself, its peers, members and modules."""

    @property
    def replica_id(self) -> int:
        """This node's replica (CRDT client) id."""

    def status(self) -> dict[str, Any]:
        """Node identity, uptime and a summary of each layer (JSON-ready)."""

    def peer_rows(self) -> list[dict[str, Any]]:
        """Peers with connection state, last sync and lag (JSON-ready)."""

    def members(self) -> dict[str, Any]:
        """Cluster members garbage collection waits for, and those forgotten (JSON-ready)."""

    async def nats_status(self) -> dict[str, Any]:
        """The NATS link between sites, ``{"enabled": false}`` without one (JSON-ready)."""

    async def forget_member(self, replica: int) -> bool:
        """Stop waiting for member ``replica``; whether it was a member."""

    def module_rows(self) -> list[dict[str, Any]]:
        """Deployed modules and this node's verdict on each (JSON-ready)."""

    async def deploy(
        self, wasm: bytes, manifest: bytes, signature: bytes, *, allow_downgrade: bool = False
    ) -> LoadedModule:
        """Verify and load a bundle here, then replicate it (a downgrade only if allowed)."""

    async def rollback_module(self, name: str, version: str | None) -> LoadedModule:
        """Make a kept version of ``name`` active again cluster-wide (None: the previous)."""

    async def remove_module(self, name: str) -> None:
        """Remove a module cluster-wide."""

    async def reload_trust_policy(self) -> dict[str, Any]:
        """Reread the trust policy file and recheck every module (JSON-ready summary)."""

    async def diagnostics(self) -> dict[str, Any]:
        """The doctor's facts and findings about this node and its peers (JSON-ready)."""


class Tokens(Protocol):
    """Admin routes over client tokens."""

    @property
    def tokens(self) -> ClientTokens:
        """This node's client tokens."""


class Dashboard(Protocol):
    """The dashboard's data route."""

    def overview(self, query: dict[str, str]) -> dict[str, Any]:
        """The cluster as this node sees it, one documents page (JSON-ready); raises
        :class:`~edgestate.errors.BadRequestError` for a bad query parameter."""


class NodeApi(Guarded, Invocations, Documents, Cluster, Tokens, Dashboard, Protocol):
    """Everything the API application needs of a node."""

    def yjs_routes(self) -> list[web.RouteDef]:
        """The y-websocket routes to mount beside the API's own."""
