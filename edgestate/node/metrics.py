"""Prometheus metrics of one node.

Event metrics (invocations, their timings) are recorded as they happen, here
only (:meth:`NodeMetrics.invoked`, :meth:`NodeMetrics.failed`: the runtime reports
each invocation's outcome and keeps no counters of its own); figures
that already live elsewhere (store sizes, sync counters, peer lag) are read from
their owners at scrape time by a collector, so there is one source of truth.
Each node has its own registry, so several nodes can share a process (tests).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from edgestate.errors import EdgestateError, ModuleNotFoundError_

if TYPE_CHECKING:
    from edgestate.host.logbudget import LogBudget
    from edgestate.runtime import InvocationResult
    from edgestate.store import Store
    from edgestate.sync.daemon import SyncDaemon

# Cold start and execution are tens of microseconds; buckets start well below.
_US_BUCKETS = (
    5e-6,
    10e-6,
    20e-6,
    50e-6,
    100e-6,
    200e-6,
    500e-6,
    1e-3,
    2e-3,
    5e-3,
    10e-3,
    50e-3,
    0.1,
    1.0,
)


class LatencyHistogram:
    """Bucket counts of one latency series, exported at scrape time.

    Cheaper than a prometheus_client Histogram child on the request path (no lock,
    no label lookup): the event loop is the only writer.
    """

    __slots__ = ("counts", "sum")

    def __init__(self) -> None:
        self.counts = [0] * (len(_US_BUCKETS) + 1)
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        """Record one value."""
        self.counts[bisect.bisect_left(_US_BUCKETS, seconds)] += 1
        self.sum += seconds

    def buckets(self) -> list[tuple[str, float]]:
        """Cumulative (le, count) pairs, +Inf last."""
        out: list[tuple[str, float]] = []
        running = 0
        for bound, count in zip((*_US_BUCKETS, float("inf")), self.counts, strict=True):
            running += count
            out.append(("+Inf" if bound == float("inf") else repr(bound), running))
        return out


class ModuleStats:
    """Invocation outcomes and latency histograms of one module."""

    __slots__ = ("cold_start", "commit", "execution", "host_calls", "outcomes")

    def __init__(self) -> None:
        self.outcomes: dict[str, int] = {}
        self.host_calls = 0
        self.cold_start = LatencyHistogram()
        self.execution = LatencyHistogram()
        self.commit = LatencyHistogram()


class NodeMetrics:
    """The metrics a node exposes at ``GET /metrics``."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.modules: dict[str, ModuleStats] = {}
        self.http_errors = Counter(
            "edgestate_http_errors",
            "API requests answered with an error, by code.",
            ["code"],
            registry=self.registry,
        )
        self.deploys = Counter(
            "edgestate_module_deploys",
            "Module bundles seen, by outcome.",
            ["outcome"],
            registry=self.registry,
        )
        self.add_collector(self._collect_modules)

    def module(self, name: str) -> ModuleStats:
        """The stats of one module (created on first use)."""
        stats = self.modules.get(name)
        if stats is None:
            stats = self.modules[name] = ModuleStats()
        return stats

    def invoked(self, result: InvocationResult) -> None:
        """Count one successful invocation and record its timings."""
        stats = self.module(result.module)
        stats.outcomes["ok"] = stats.outcomes.get("ok", 0) + 1
        stats.host_calls += result.host_calls
        stats.cold_start.observe(result.instantiate_ns / 1e9)
        stats.execution.observe(result.execute_ns / 1e9)
        stats.commit.observe(result.commit_ns / 1e9)

    def failed(self, name: str, exc: EdgestateError) -> None:
        """Count one failed invocation of module ``name`` under its error code."""
        # Unknown names share one series: a caller must not be able to mint
        # metric series (and memory) by inventing module names.
        self.failed_code(name, exc.code)

    def failed_code(self, name: str, code: str) -> None:
        """:meth:`failed` by error code (what an invocation worker reports)."""
        known = code != ModuleNotFoundError_.code
        outcomes = self.module(name if known else "_unknown").outcomes
        outcomes[code] = outcomes.get(code, 0) + 1

    def _collect_modules(self) -> Iterable[Metric]:
        invocations = CounterMetricFamily(
            "edgestate_invocations", "Module invocations by outcome.", labels=["module", "outcome"]
        )
        families = {
            "cold_start": HistogramMetricFamily(
                "edgestate_cold_start_seconds",
                "Fresh sandbox instantiation per invocation.",
                labels=["module"],
            ),
            "execution": HistogramMetricFamily(
                "edgestate_execution_seconds",
                "Guest execution time per invocation.",
                labels=["module"],
            ),
            "commit": HistogramMetricFamily(
                "edgestate_commit_seconds",
                "Durable commit of an invocation's writes.",
                labels=["module"],
            ),
        }
        host_calls = CounterMetricFamily(
            "edgestate_host_calls",
            "Host ABI calls made by successful invocations.",
            labels=["module"],
        )
        for name, stats in list(self.modules.items()):
            for outcome, count in list(stats.outcomes.items()):
                invocations.add_metric([name, outcome], count)
            host_calls.add_metric([name], stats.host_calls)
            for attr, family in families.items():
                histogram: LatencyHistogram = getattr(stats, attr)
                family.add_metric([name], histogram.buckets(), histogram.sum)
        yield invocations
        yield host_calls
        yield from families.values()

    def add_collector(self, collect: Callable[[], Iterable[Metric]]) -> None:
        """Register a scrape-time source of metric families."""
        self.registry.register(_FunctionCollector(collect))

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return bytes(generate_latest(self.registry))


class _FunctionCollector(Collector):
    def __init__(self, collect: Callable[[], Iterable[Metric]]) -> None:
        self._collect = collect

    def collect(self) -> Iterable[Metric]:
        return self._collect()

    def describe(self) -> Iterable[Metric]:
        return []


def gauge(
    name: str, doc: str, labels: list[str], rows: Iterable[tuple[list[str], float]]
) -> Metric:
    """A gauge family from (label values, value) rows."""
    family = GaugeMetricFamily(name, doc, labels=labels)
    for values, value in rows:
        family.add_metric(values, value)
    return family


def counter(
    name: str, doc: str, labels: list[str], rows: Iterable[tuple[list[str], float]]
) -> Metric:
    """A counter family from (label values, value) rows."""
    family = CounterMetricFamily(name, doc, labels=labels)
    for values, value in rows:
        family.add_metric(values, value)
    return family


def gc_metrics(collected_items: Iterable[tuple[str, int]], members: int) -> list[Metric]:
    """Garbage-collection gauges from figures read at scrape time.

    ``collected_items`` is (document, overwritten entries collected so far) per
    document; ``members`` is how many cluster members (this node included)
    collection waits for. A member count that stays above the live cluster's
    size is the sign of a member gone for good and not yet forgotten.
    """
    return [
        gauge(
            "edgestate_gc_collected_items",
            "Overwritten map entries garbage-collected so far, per document.",
            ["doc"],
            (([doc], items) for doc, items in collected_items),
        ),
        gauge(
            "edgestate_cluster_members",
            "Cluster members garbage collection waits for, this node included.",
            [],
            [([], members)],
        ),
    ]


def guest_log_metrics(
    budgets: Iterable[LogBudget], workers: Mapping[str, tuple[int, int]] | None = None
) -> list[Metric]:
    """Guest log lines dropped over each module's budget across invocations.

    ``workers`` adds (lines, bytes) dropped per module in invocation workers.
    """
    totals: dict[str, list[int]] = {}
    for b in budgets:
        totals[b.module] = [b.dropped_records, b.dropped_bytes]
    for module, (records, size) in (workers or {}).items():
        row = totals.setdefault(module, [0, 0])
        row[0] += records
        row[1] += size
    return [
        counter(
            "edgestate_guest_log_dropped",
            "Guest log lines dropped over the module's log budget (runtime.host.log_*).",
            ["module"],
            (([m], r[0]) for m, r in sorted(totals.items())),
        ),
        counter(
            "edgestate_guest_log_dropped_bytes",
            "Guest log bytes dropped over the module's log budget.",
            ["module"],
            (([m], r[1]) for m, r in sorted(totals.items())),
        ),
    ]


def layer_metrics(store: Store, sync: SyncDaemon) -> Iterable[Metric]:
    """Store and sync figures, read from their owners at scrape time."""
    infos = [store.document_info(n) for n in store.documents()]
    yield gauge(
        "edgestate_store_keys",
        "Keys per document.",
        ["doc"],
        (([i.name], i.keys) for i in infos),
    )
    yield gauge(
        "edgestate_store_log_entries",
        "Update-log length per document.",
        ["doc"],
        (([i.name], i.log_entries) for i in infos),
    )
    yield gauge(
        "edgestate_store_bytes",
        "Log + snapshot bytes per document.",
        ["doc"],
        (([i.name], i.log_bytes + i.snapshot_bytes) for i in infos),
    )
    yield gauge(
        "edgestate_store_file_bytes",
        "Size of the LMDB data file.",
        [],
        [([], store.stats()["file_bytes"])],
    )
    yield gauge(
        "edgestate_store_loaded_documents",
        "Documents whose CRDT is in memory (loaded on write, evicted when idle).",
        [],
        [([], len(store.loaded_documents()))],
    )
    peers = sync.peers()
    yield gauge("edgestate_peers_connected", "Connected peers.", [], [([], len(sync.connected()))])
    yield gauge(
        "edgestate_peer_lag",
        "Operations a peer trails us by.",
        ["peer"],
        (([p.node_id or p.address or "?"], p.lag) for p in peers),
    )
    for what in ("bytes", "updates"):
        yield counter(
            f"edgestate_peer_sync_{what}",
            f"Sync {what} exchanged with each peer.",
            ["peer", "direction"],
            (
                ([p.node_id or p.address or "?", way], getattr(p, f"{what}_{way}"))
                for p in peers
                for way in ("in", "out")
            ),
        )
    stats = sync.stats
    yield counter(
        "edgestate_sync_bytes",
        "Sync bytes by direction.",
        ["direction"],
        [(["in"], stats.bytes_in), (["out"], stats.bytes_out)],
    )
    yield counter(
        "edgestate_sync_frames",
        "Sync frames by direction.",
        ["direction"],
        [(["in"], stats.frames_in), (["out"], stats.frames_out)],
    )
    yield counter(
        "edgestate_sync_updates_pushed",
        "Updates pushed to peers.",
        [],
        [([], stats.updates_pushed)],
    )
    yield counter(
        "edgestate_sync_resyncs",
        "Peers resynced from state vectors.",
        [],
        [([], stats.resyncs)],
    )
    yield counter("edgestate_sync_refused", "Peer connections refused.", [], [([], stats.refused)])


__all__ = [
    "LatencyHistogram",
    "ModuleStats",
    "NodeMetrics",
    "counter",
    "gauge",
    "gc_metrics",
    "layer_metrics",
]
