"""The node's side of the dashboard: its record in ``_nodes`` and the overview.

The page itself is served by ``edgestate.node.api.dashboard``; this part owns
what it needs at run time (started after the API, closed before it) so the
composition root only starts and stops one thing.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Protocol

from edgestate import __version__
from edgestate.node.nodebook import NodeBook, record_body, record_fingerprint
from edgestate.node.overview import OverviewQuery, build_overview

# However many tabs poll a node, each distinct query is built at most once per
# CACHE_S: the overview reads every document's figures on the event loop.
CACHE_S = 1.0
MAX_CACHED = 16

if TYPE_CHECKING:
    from edgestate.node.metrics import NodeMetrics
    from edgestate.node.registry import ModuleRegistry
    from edgestate.store import Store
    from edgestate.sync.daemon import SyncDaemon
    from edgestate.sync.frontier import FrontierTracker


class DashboardHost(Protocol):
    """What the dashboard needs of the node."""

    @property
    def store(self) -> Store: ...

    @property
    def sync(self) -> SyncDaemon: ...

    @property
    def registry(self) -> ModuleRegistry: ...

    @property
    def metrics(self) -> NodeMetrics: ...

    @property
    def api_url(self) -> str: ...

    @property
    def replica_id(self) -> int: ...

    @property
    def started_at(self) -> float: ...

    def status(self) -> dict[str, Any]: ...

    def peer_rows(self) -> list[dict[str, Any]]: ...

    def module_rows(self) -> list[dict[str, Any]]: ...


class NodeDashboard:
    """This node's published record and the overview built from everyone's."""

    def __init__(self, node: DashboardHost) -> None:
        self._node = node
        self.nodebook = NodeBook(node.store, node.sync.node_id, self._describe, record_fingerprint)
        self._cache: dict[OverviewQuery, tuple[float, dict[str, Any]]] = {}

    async def start(self) -> None:
        """Publish this node's record and follow everyone's until :meth:`close`
        (once the API listens: the record names its address)."""
        self._node.registry.listeners.append(self.nodebook.changed)
        self._node.metrics.add_collector(lambda: [self.nodebook.visible.metric()])
        await self.nodebook.start()

    async def close(self) -> None:
        """Stop publishing and following."""
        await self.nodebook.close()

    def overview(self, query: dict[str, str]) -> dict[str, Any]:
        """The answer of ``GET /v1/admin/overview`` for these query parameters."""
        parsed = OverviewQuery.parse(query)
        now = time.monotonic()
        hit = self._cache.get(parsed)
        if hit is not None and now - hit[0] < CACHE_S:
            return hit[1]
        answer = build_overview(self, parsed)
        if len(self._cache) >= MAX_CACHED:
            self._cache = {q: e for q, e in self._cache.items() if now - e[0] < CACHE_S}
        if len(self._cache) < MAX_CACHED:
            self._cache[parsed] = (now, answer)
        return answer

    # --- what build_overview reads (OverviewSource) ---------------------------------

    @property
    def store(self) -> Store:
        return self._node.store

    @property
    def metrics(self) -> NodeMetrics:
        return self._node.metrics

    @property
    def frontier(self) -> FrontierTracker:
        return self._node.sync.frontier

    def status(self) -> dict[str, Any]:
        return self._node.status()

    def peer_rows(self) -> list[dict[str, Any]]:
        return self._node.peer_rows()

    def module_rows(self) -> list[dict[str, Any]]:
        return self._node.module_rows()

    def _describe(self) -> dict[str, Any]:
        node = self._node
        return record_body(
            api=node.api_url,
            version=__version__,
            replica=node.replica_id,
            started_at=node.started_at,
            modules=node.module_rows(),
            peers=node.peer_rows(),
        )
