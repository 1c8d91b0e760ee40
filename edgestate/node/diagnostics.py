"""What a node knows of its own health and of each peer's: the facts behind ``edgestate doctor``.

:func:`gather` collects them (``GET /v1/admin/diagnostics``, schemas/openapi.yaml):
the node's certificate and cluster, its trust policy, disk and LMDB map headroom,
every peer it knows (reachable? its certificate, when it last synced), per
document which replica lacks what (state vectors compared), and which member's
reports hold garbage collection back. :mod:`edgestate.node.findings` and
:mod:`~edgestate.node.cluster_findings` turn the facts into findings, each with
what to do about it.

Replicas are compared on fresh vectors where the peer is connected: a
state-vector exchange is asked of every connected peer first (bounded by
``REFRESH_TIMEOUT_S``); a peer that is down is compared as of its last exchange,
which is exactly what it lacks if it comes back.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from edgestate import __version__
from edgestate.errors import EdgestateError
from edgestate.node.cluster_findings import findings_of
from edgestate.node.findings import overall
from edgestate.runtime import Runtime, TrustPolicy
from edgestate.store import Store, decode_state_vector
from edgestate.sync import PeerView, SyncConfig, SyncDaemon, missing
from edgestate.sync.tls import file_not_after

if TYPE_CHECKING:
    from edgestate.node.config import NodeConfig

# How long the doctor waits for connected peers to answer a state-vector exchange:
# a healthy peer answers in milliseconds; one that takes longer is shown as compared
# on its previous vectors (``fresh: false``), not waited for.
REFRESH_TIMEOUT_S = 3.0
# Most replica differences listed (the rest are counted): a cluster that diverged
# everywhere needs one finding per peer, not a page per client.
MAX_DIFFERENCES = 200


class Diagnosable(Protocol):
    """What :func:`diagnose` reads of a node (``Node`` is one)."""

    @property
    def store(self) -> Store: ...

    @property
    def sync(self) -> SyncDaemon: ...

    @property
    def runtime(self) -> Runtime: ...

    config: NodeConfig

    def module_rows(self) -> list[dict[str, Any]]: ...


async def diagnose(node: Diagnosable) -> dict[str, Any]:
    """:func:`gather` on a running node's parts."""
    cfg = node.config
    subject = Subject(
        node.store,
        node.sync,
        cfg.sync,
        cfg.data_dir,
        node.runtime.policy,
        cfg.policy_path,
        node.module_rows(),
    )
    return await gather(subject)


@dataclass(frozen=True, slots=True)
class Subject:
    """The parts of a node the diagnostics read."""

    store: Store
    sync: SyncDaemon
    sync_config: SyncConfig
    data_dir: Path
    policy: TrustPolicy
    policy_path: Path
    module_rows: list[dict[str, Any]]


async def gather(subject: Subject, *, refresh_s: float = REFRESH_TIMEOUT_S) -> dict[str, Any]:
    """The node's diagnostics (JSON-ready), with its findings and overall status."""
    sync = subject.sync
    fresh = set(await sync.refresh_peer_vectors(refresh_s))
    now = time.time()
    ours = {doc: decode_state_vector(sv) for doc, sv in (await sync.state_vectors()).items()}
    views = sync.peer_views()
    facts: dict[str, Any] = {
        "checked_at": now,
        "node": {
            "version": __version__,
            "node_id": sync.node_id,
            "cluster_id": sync.cluster_id,
            "replica": sync.frontier.me,
            "insecure": subject.sync_config.insecure,
        },
        "tls": _tls(subject.sync_config),
        "trust": await asyncio.to_thread(_trust, subject),
        "storage": _storage(subject),
        "peers": [_peer(v, v.node_id in fresh) for v in views],
    }
    # Off the loop (the node keeps serving): both are linear in documents times
    # clients, seconds of Python for million-client vectors. On copies: the views
    # are copies already; reports are replaced, never mutated, per document (see
    # FrontierTracker.merge), so copying the maps above them is enough.
    frontier = sync.frontier
    reports = {m: dict(docs) for m, docs in frontier.reports.items()}
    facts["replicas"] = await asyncio.to_thread(_replicas, ours, views, fresh)
    facts["gc"] = {
        "me": frontier.me,
        "members": frontier.members,
        "forgotten": sorted(frontier.forgotten),
        "round_s": subject.sync_config.gc_round_s,
        "holders": await asyncio.to_thread(_gc_holders, frontier.me, reports, ours),
    }
    found = findings_of(facts)
    facts["findings"] = found
    facts["status"] = overall(found)
    return facts


def _tls(config: SyncConfig) -> dict[str, Any]:
    files = config.tls
    if files is None:
        return {"enabled": False, "cert": None, "cert_not_after": None, "ca_not_after": None}
    out: dict[str, Any] = {"enabled": True, "cert": str(files.cert), "error": None}
    for key, path in (("cert_not_after", files.cert), ("ca_not_after", files.ca_cert)):
        try:
            out[key] = file_not_after(path)
        except EdgestateError as exc:
            out[key] = None
            out["error"] = str(exc)
    return out


def _trust(subject: Subject) -> dict[str, Any]:
    path, running = subject.policy_path, subject.policy
    out: dict[str, Any] = {
        "path": str(path),
        "exists": path.exists(),
        "publishers": sorted(p.name for p in running.publishers),
        "file_error": None,
        "matches_file": None,
        "refused_modules": [
            {"name": r["name"], "error": r["error"]}
            for r in subject.module_rows
            if r["state"] == "refused"
        ],
    }
    if out["exists"]:
        try:
            on_disk = TrustPolicy.load(path)
        except EdgestateError as exc:
            out["file_error"] = f"{exc.code}: {exc}"
        else:
            key = lambda p: p.public_key  # noqa: E731 - one sort key, used twice
            out["matches_file"] = sorted(on_disk.publishers, key=key) == sorted(
                running.publishers, key=key
            )
    return out


def _storage(subject: Subject) -> dict[str, Any]:
    stats = subject.store.stats()
    disk = shutil.disk_usage(subject.data_dir)
    return {
        "data_dir": str(subject.data_dir),
        "disk_total_bytes": disk.total,
        "disk_free_bytes": disk.free,
        "map_size": int(stats["map_size"]),
        # The file grows with the pages LMDB has used: its high-water mark.
        "map_used_bytes": int(stats["file_bytes"]),
    }


def _peer(view: PeerView, fresh: bool) -> dict[str, Any]:
    return {
        "node_id": view.node_id,
        "address": view.address,
        "source": view.source,
        "state": view.state,
        "connected": view.connected,
        "seen_ago_s": round(view.seen_ago_s, 3),
        "last_sync": view.last_sync,
        "failures": view.failures,
        "last_error": view.last_error,
        "cert_not_after": view.cert_not_after,
        "clock_offset_s": view.clock_offset_s,
        "replica": view.replica,
        "vectors_fresh": fresh,
        "documents_not_compared": view.vectors_dropped,
    }


def _replicas(
    ours: dict[str, dict[int, int]], views: list[PeerView], fresh: set[str]
) -> dict[str, Any]:
    """Per peer and document, which side lacks how many updates of which client."""
    rows: list[dict[str, Any]] = []
    more = 0
    for view in views:
        if view.node_id is None or view.last_sync is None:
            continue  # never exchanged state vectors: nothing to compare
        theirs = view.vectors
        for doc in sorted(set(ours) | set(theirs)):
            mine, other = ours.get(doc), theirs.get(doc)
            pairs: list[tuple[str, dict[int, int]]] = []
            if mine is not None:
                pairs.append(("peer", missing(mine, other or {})))
            if other is not None:
                pairs.append(("us", missing(other, mine or {})))
            for lacking, gaps in pairs:
                for client, count in sorted(gaps.items()):
                    if len(rows) >= MAX_DIFFERENCES:
                        more += 1
                        continue
                    rows.append(
                        {
                            "doc": doc,
                            "node_id": view.node_id,
                            "lacking": lacking,
                            "client": client,
                            "updates": count,
                            "whole_document": (other if lacking == "peer" else mine) is None,
                            "as_of": view.last_sync,
                            "fresh": view.node_id in fresh,
                        }
                    )
    return {"differences": rows, "more": more}


def _gc_holders(
    me: int, reports: dict[int, dict[str, dict[int, int]]], ours: dict[str, dict[int, int]]
) -> list[dict[str, Any]]:
    """Per document, the members whose last report trails what the others reported."""
    holders: list[dict[str, Any]] = []
    for doc in sorted(ours):
        vectors = {m: r.get(doc) for m, r in reports.items()}
        sup: dict[int, int] = {}
        for v in vectors.values():
            for c, k in (v or {}).items():
                sup[c] = max(sup.get(c, 0), k)
        for member, vector in sorted(vectors.items()):
            if member == me:
                continue
            if vector is None:
                holders.append({"doc": doc, "replica": member, "behind": None, "reported": False})
                continue
            behind = sum(missing(sup, vector).values())
            if behind:
                holders.append({"doc": doc, "replica": member, "behind": behind, "reported": True})
            if len(holders) >= MAX_DIFFERENCES:
                return holders
    return holders
