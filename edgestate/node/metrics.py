"""Prometheus metrics of one node.

Event metrics (invocations, their timings) are recorded as they happen, here
only (:meth:`NodeMetrics.invoked`, :meth:`NodeMetrics.failed`: the runtime reports
each invocation's outcome and keeps no counters of its own); figures
that already live elsewhere (store sizes, sync counters, peer lag) are read from
their owners at scrape time by a collector, so there is one source of truth.
Each node has its own registry, so several nodes can share a process (tests),
with prometheus_client's process, platform and GC collectors on it, a build-info
series and no ``_created`` series. HTTP requests are counted in
:mod:`.http_metrics`. Every metric and label: docs/observability.md.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING

from prometheus_client import (
    CollectorRegistry,
    Counter,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from edgestate.errors import EdgestateError, ModuleNotFoundError_
from edgestate.node.build_info import build_info
from edgestate.node.histogram import LatencyHistogram
from edgestate.node.http_metrics import HttpMetrics

if TYPE_CHECKING:
    from edgestate.host.logbudget import LogBudget
    from edgestate.runtime import InvocationResult, LoadedModule
    from edgestate.store import Store
    from edgestate.sync.daemon import SyncDaemon
    from edgestate.sync.peers import PeerStatus

# prometheus_client's switch is process-wide, so it is thrown here, once, on import:
# every registry in a node's process is a node's, and none wants the ``_created``
# series (one more per counter and histogram child, a timestamp no dashboard
# queries, that doubles what a scrape of counters stores).
disable_created_metrics()  # type: ignore[no-untyped-call]


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
        # The collectors prometheus_client ships, on this node's own registry (the
        # global one is not scraped: several nodes may share a process in tests).
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self.modules: dict[str, ModuleStats] = {}
        self.http = HttpMetrics()
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
        self.add_collector(self.http.collect)
        info = build_info()
        self.add_collector(
            lambda: [
                gauge(
                    "edgestate_build_info",
                    "Always 1; the labels say which versions this node runs.",
                    [*info],
                    [([*info.values()], 1)],
                )
            ]
        )

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


# How much of a node id a peer label shows when the peer has no address (it dialed
# us): enough to tell a handful of peers apart at a glance, not a 64-hex wall.
PEER_ID_CHARS = 12


def peer_labels(peer: PeerStatus) -> tuple[str, str]:
    """(peer, node_id) labels: the address we dial it at, or its id shortened, and its id.

    A TLS node id is a 64-hex certificate fingerprint; the readable ``peer`` label
    is what a person picks a series by, ``node_id`` what they join on.
    """
    node_id = peer.node_id or ""
    return peer.address or node_id[:PEER_ID_CHARS] or "?", node_id


def module_info(modules: Iterable[LoadedModule], states: Mapping[str, str]) -> Metric:
    """``edgestate_module_info``: 1 per running module, its identity in the labels.

    The invocation series carry only the module's name; its version and content
    hash (``sha256`` of the wasm) live here, one series per module, to join on.
    """
    return gauge(
        "edgestate_module_info",
        "Always 1 per loaded module: its version, wasm sha256, publisher and state.",
        ["module", "version", "sha256", "publisher", "state"],
        (
            ([m.name, m.version, m.wasm_sha256, m.publisher, states.get(m.name, "active")], 1)
            for m in sorted(modules, key=lambda m: m.name)
        ),
    )


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
    env = store.stats()
    yield gauge(
        "edgestate_store_file_bytes",
        "Size of the LMDB data file.",
        [],
        [([], env["file_bytes"])],
    )
    # The file grows up to the map size and no further (writes then fail with
    # map_full): file / map is how full the store is.
    yield gauge(
        "edgestate_store_map_bytes",
        "LMDB map size: the most the data file may grow to (store.map_size).",
        [],
        [([], env["map_size"])],
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
        ["peer", "node_id"],
        (([*peer_labels(p)], p.lag) for p in peers),
    )
    for what in ("bytes", "updates"):
        yield counter(
            f"edgestate_peer_sync_{what}",
            f"Sync {what} exchanged with each peer.",
            ["peer", "node_id", "direction"],
            (
                ([*peer_labels(p), way], getattr(p, f"{what}_{way}"))
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
    yield counter(
        "edgestate_sync_duplicates_dropped",
        "Push copies of an update already received, dropped before the store.",
        [],
        [([], stats.duplicates_dropped)],
    )
    yield counter(
        "edgestate_sync_reports_sent",
        "Member reports frames sent to peers (only what grew since each link was told).",
        [],
        [([], stats.reports_out)],
    )
    yield counter("edgestate_sync_refused", "Peer connections refused.", [], [([], stats.refused)])


__all__ = [
    "PEER_ID_CHARS",
    "LatencyHistogram",
    "ModuleStats",
    "NodeMetrics",
    "counter",
    "gauge",
    "gc_metrics",
    "layer_metrics",
    "module_info",
    "peer_labels",
]
