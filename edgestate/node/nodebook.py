"""Each node's own record in the replicated ``_nodes`` document, and what it teaches.

A node knows its own module verdicts and peer links; nothing else replicates
them (``_modules`` carries bundles, not what each node did with them). So every
node writes one small record under its node id in ``_nodes``: its API address,
version, replica id, each module's state and version, and its links. The record
replicates like any other key, so any node can show the whole cluster: the
rollout matrix (modules x nodes) and the link graph, without holding other
nodes' admin tokens.

Two keys per node, so liveness costs little: the record (``n/<node id>``) is
rewritten when what it says changes (checked every ``CHECK_S``) and to refresh
its lag figures every ``RECORD_EVERY_S``; a heartbeat of a few dozen bytes
(``b/<node id>``) is written every ``HEARTBEAT_S``. Both are stamped with the
writer's wall clock. Every overwrite is history until garbage collection drops
it, and collection waits for every member, so what a node writes while one
member is away stays: 50 nodes beating every 5 s add about 50 MB a day to
``_nodes`` then, where a whole record per beat would add ~20 times that.

The heartbeat doubles as a probe of the cluster's *write-to-visible*
latency: when a peer's write to ``_nodes`` becomes visible here (its remote
update committed to this node's store), ``now - written_at`` is how long one
write took from a commit on that node to being readable here. Wall clocks of two
machines differ, so across hosts the figure carries their skew; a negative
one is counted as zero (and in ``skewed``) rather than dropped silently.

A record is bounded (``MAX_RECORD_MODULES``, ``MAX_RECORD_PEERS``, error text
cut to ``MAX_ERROR_CHARS``), so 50 nodes cost tens of kilobytes in all.
"""

from __future__ import annotations

import asyncio
import bisect
import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.core import HistogramMetricFamily, Metric

from edgestate.store import ChangeStream, Set, Store

log = logging.getLogger(__name__)

NODES_DOC = "_nodes"
RECORD_FORMAT = 1
# Liveness and the write-to-visible probe: a ~50-byte write per node every 5 s
# is noise beside real traffic, and a node gone quiet shows as stale within
# STALE_AFTER_S, about three missed beats.
HEARTBEAT_S = 5.0
STALE_AFTER_S = 3 * HEARTBEAT_S + 1.0
# Links' lag and last sync move all the time; a minute old is fresh enough for
# other nodes' links (this node's own peers are shown live).
RECORD_EVERY_S = 60.0
RECORD_PREFIX, BEAT_PREFIX = "n/", "b/"
# How often a change of verdicts or links is looked for: the page updates
# within about this long of a deploy or a dropped link elsewhere.
CHECK_S = 1.0
# A record travels in every sync of _nodes: bounded whatever a node runs.
MAX_RECORD_MODULES = 256
MAX_RECORD_PEERS = 64
MAX_ERROR_CHARS = 200
# Records of at most this many nodes are read (a 50-node cluster has room to grow).
MAX_NODES = 512
# Write-to-visible buckets, seconds: same host is sub-millisecond to a few ms,
# a WAN link or a backoff-delayed peer seconds.
WTV_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)


@dataclass(slots=True)
class VisibleHistogram:
    """Write-to-visible latencies seen here (seconds), in ``WTV_BUCKETS``."""

    counts: list[int] = field(default_factory=lambda: [0] * (len(WTV_BUCKETS) + 1))
    sum: float = 0.0
    skewed: int = 0

    def observe(self, seconds: float) -> None:
        """Record one latency (a negative one, clock skew, as zero)."""
        if seconds < 0:
            self.skewed += 1
            seconds = 0.0
        self.counts[bisect.bisect_left(WTV_BUCKETS, seconds)] += 1
        self.sum += seconds

    @property
    def count(self) -> int:
        """How many latencies were recorded."""
        return sum(self.counts)

    def quantile(self, q: float) -> float | None:
        """Upper bound of the bucket holding quantile ``q`` (None if empty; the
        last finite bound for the overflow bucket)."""
        total = self.count
        if total == 0:
            return None
        rank, running = q * total, 0
        for i, n in enumerate(self.counts):
            running += n
            if running >= rank and n:
                return WTV_BUCKETS[min(i, len(WTV_BUCKETS) - 1)]
        return WTV_BUCKETS[-1]

    def to_json(self) -> dict[str, Any]:
        """Buckets (non-cumulative, ``le_ms`` None for the overflow) and summary."""
        p50, p99 = self.quantile(0.5), self.quantile(0.99)
        bounds: Iterable[float | None] = (*WTV_BUCKETS, None)
        return {
            "count": self.count,
            "sum_ms": round(self.sum * 1000, 3),
            "p50_ms": None if p50 is None else p50 * 1000,
            "p99_ms": None if p99 is None else p99 * 1000,
            "skewed": self.skewed,
            "buckets": [
                {"le_ms": None if b is None else b * 1000, "count": n}
                for b, n in zip(bounds, self.counts, strict=True)
            ],
        }

    def metric(self) -> Metric:
        """The Prometheus histogram ``edgestate_write_to_visible_seconds``."""
        family = HistogramMetricFamily(
            "edgestate_write_to_visible_seconds",
            "From a peer's commit of its _nodes heartbeat to the same write being "
            "readable here (wall clocks; includes their skew across hosts).",
        )
        cumulative, running = [], 0
        for bound, n in zip((*WTV_BUCKETS, float("inf")), self.counts, strict=True):
            running += n
            cumulative.append(("+Inf" if bound == float("inf") else repr(bound), float(running)))
        family.add_metric([], cumulative, self.sum)
        return family


@dataclass(slots=True)
class Seen:
    """What this node learned of another node's record."""

    record: dict[str, Any]
    seen_at: float | None = None  # local wall clock when its last update arrived
    write_to_visible_s: float | None = None


class NodeBook:
    """Publishes this node's record and reads everyone's; see the module docstring.

    ``describe`` returns this node's record body (JSON-ready); ``fingerprint``
    picks out of it what makes a rewrite worth it before the heartbeat is due.
    """

    def __init__(
        self,
        store: Store,
        node_id: str,
        describe: Callable[[], dict[str, Any]],
        fingerprint: Callable[[dict[str, Any]], object],
    ) -> None:
        self.store = store
        self.node_id = node_id
        self.describe = describe
        self.fingerprint = fingerprint
        self.visible = VisibleHistogram()
        self.seen: dict[str, Seen] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._last_print: object = None
        self._last_write = self._last_record = 0.0
        self._wake = asyncio.Event()

    async def start(self) -> None:
        """Create ``_nodes``, publish once, then follow and republish until :meth:`close`."""
        await self.store.acreate_document(NODES_DOC)
        stream = self.store.changes(docs=(NODES_DOC,))
        self._reload()
        await self.publish()
        self._tasks = [
            asyncio.create_task(self._follow(stream), name="edgestate-nodebook-follow"),
            asyncio.create_task(self._republish(), name="edgestate-nodebook-publish"),
        ]

    async def close(self) -> None:
        """Stop both tasks; nothing is written afterwards."""
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks)
        self._tasks = []

    async def changed(self) -> None:
        """Something the record says changed (a module verdict): republish soon."""
        self._wake.set()

    async def publish(self) -> None:
        """Write this node's record now (it counts as a heartbeat too)."""
        body = self.describe()
        self._last_print = self.fingerprint(body)
        record = {"format": RECORD_FORMAT, **body, "node_id": self.node_id}
        record["written_at"] = time.time()
        await self.store.abatch([Set(NODES_DOC, RECORD_PREFIX + self.node_id, _dump(record))])
        self._last_record = self._last_write = time.monotonic()
        self.seen[self.node_id] = Seen(record, time.time())

    async def beat(self) -> None:
        """Write this node's heartbeat now."""
        beat = {"format": RECORD_FORMAT, "written_at": time.time()}
        await self.store.abatch([Set(NODES_DOC, BEAT_PREFIX + self.node_id, _dump(beat))])
        self._last_write = time.monotonic()

    def records(self) -> list[Seen]:
        """Every node's last record, this node's first, then by node id."""
        mine = self.seen.get(self.node_id)
        others = sorted((s for k, s in self.seen.items() if k != self.node_id), key=_node_id)
        return ([mine] if mine else []) + others

    async def _republish(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), CHECK_S)
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                now = time.monotonic()
                stale = now - self._last_record >= RECORD_EVERY_S
                if stale or self.fingerprint(self.describe()) != self._last_print:
                    await self.publish()
                elif now - self._last_write >= HEARTBEAT_S:
                    await self.beat()
            except Exception:
                # The record is a view of the node, never a reason to stop it.
                log.exception("could not publish this node's record in %s", NODES_DOC)

    async def _follow(self, stream: ChangeStream) -> None:
        try:
            async for event in stream:
                if stream.reset_overflow():
                    self._reload()
                if event.doc == NODES_DOC and event.origin is not None:
                    now = time.time()
                    for key in event.keys:
                        self._learn(key, now)
        finally:
            stream.close()

    def _reload(self) -> None:
        page = self.store.scan(NODES_DOC, "", None, 2 * MAX_NODES)
        for key, _ in page.items:
            if key.startswith(RECORD_PREFIX) and key[len(RECORD_PREFIX) :] not in self.seen:
                self._learn(key, None)

    def _learn(self, key: str, arrived: float | None) -> None:
        prefix, node_id = key[:2], key[2:]
        if node_id == self.node_id or prefix not in (RECORD_PREFIX, BEAT_PREFIX):
            return  # our own writes, replicated back: nothing to learn
        raw = self.store.get(NODES_DOC, key)
        if raw is None:
            if prefix == RECORD_PREFIX:
                self.seen.pop(node_id, None)
            return
        parsed = _parse(raw)
        if parsed is None:
            log.warning("unreadable entry %r in %s, ignored", key[:64], NODES_DOC)
            return
        entry = self.seen.get(node_id)
        if entry is None:
            if len(self.seen) >= MAX_NODES:
                return
            # a beat before the record: the node shows, its details follow
            entry = self.seen[node_id] = Seen({"format": RECORD_FORMAT, "node_id": node_id})
        if prefix == RECORD_PREFIX:
            entry.record = {**parsed, "node_id": node_id}
        if arrived is None:
            return
        entry.seen_at = arrived
        written = parsed.get("written_at")
        if isinstance(written, int | float):
            entry.write_to_visible_s = arrived - float(written)
            self.visible.observe(entry.write_to_visible_s)


def _dump(value: dict[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode()


def _parse(raw: bytes) -> dict[str, Any] | None:
    try:
        record = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(record, dict) or record.get("format") != RECORD_FORMAT:
        return None
    return record


def _node_id(seen: Seen) -> str:
    return str(seen.record.get("node_id", ""))


def record_body(
    *,
    api: str,
    version: str,
    replica: int,
    started_at: float,
    modules: list[dict[str, Any]],
    peers: list[dict[str, Any]],
) -> dict[str, Any]:
    """This node's record body from its module and peer rows, bounded."""
    return {
        "api": api,
        "version": version,
        "replica": replica,
        "started_at": started_at,
        "modules": {
            m["name"]: {
                "state": m["state"],
                "version": m["version"],
                "offered_version": m["offered_version"],
                "error_code": m["error_code"],
                "error": (m["error"] or "")[:MAX_ERROR_CHARS] or None,
            }
            for m in modules[:MAX_RECORD_MODULES]
        },
        "peers": [
            {
                "node_id": p["node_id"],
                "address": p["address"],
                "state": p["state"],
                "lag": p["lag"],
                "last_sync": p["last_sync"],
            }
            for p in peers[:MAX_RECORD_PEERS]
        ],
    }


def record_fingerprint(body: dict[str, Any]) -> object:
    """What in a record is worth an early rewrite: verdicts, versions, link states
    (not lag or last sync, which move all the time and wait for the heartbeat)."""
    peers = sorted((str(p["node_id"]), str(p["state"])) for p in body["peers"])
    return (json.dumps(body["modules"], sort_keys=True), peers)
