"""The JSON-ready rows of the cluster as this node sees it: its peers
(``GET /peers``, the dashboard) and the members garbage collection waits for
(``GET /members``)."""

from __future__ import annotations

from typing import Any

from edgestate.sync import SyncDaemon

__all__ = ["member_rows", "peer_rows"]


def peer_rows(sync: SyncDaemon) -> list[dict[str, Any]]:
    """Peers with connection state, last sync and lag."""
    return [
        {
            "node_id": p.node_id,
            "address": p.address,
            "source": p.source,
            "state": p.state.value,
            "connected_since": p.connected_since,
            "last_sync": p.last_sync,
            "lag": p.lag,
            "queued": p.queued,
            "failures": p.failures,
            "last_error": p.last_error,
            "bytes_in": p.bytes_in,
            "bytes_out": p.bytes_out,
            "updates_in": p.updates_in,
            "updates_out": p.updates_out,
        }
        for p in sync.peers()
    ]


def member_rows(sync: SyncDaemon) -> dict[str, Any]:
    """Cluster members garbage collection waits for, and those forgotten."""
    frontier = sync.frontier
    rows = [
        {
            "replica": replica,
            "self": replica == frontier.me,
            # Documents it reported: until it has reported one, that
            # document's garbage collection waits for it.
            "documents": len(frontier.reports.get(replica, {})),
        }
        for replica in frontier.members
    ]
    return {"me": frontier.me, "members": rows, "forgotten": sorted(frontier.forgotten)}
