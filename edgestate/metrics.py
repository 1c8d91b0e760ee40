"""Prometheus metrics of one node.

Event metrics (invocations, their timings) are recorded as they happen; figures
that already live elsewhere (store sizes, sync counters, peer lag) are read from
their owners at scrape time by a collector, so there is one source of truth.
Each node has its own registry, so several nodes can share a process (tests).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

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


class NodeMetrics:
    """The metrics a node exposes at ``GET /metrics``."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.invocations = Counter(
            "edgestate_invocations",
            "Module invocations by outcome.",
            ["module", "outcome"],
            registry=self.registry,
        )
        self.cold_start = Histogram(
            "edgestate_cold_start_seconds",
            "Fresh sandbox instantiation per invocation.",
            ["module"],
            buckets=_US_BUCKETS,
            registry=self.registry,
        )
        self.execution = Histogram(
            "edgestate_execution_seconds",
            "Guest execution time per invocation.",
            ["module"],
            buckets=_US_BUCKETS,
            registry=self.registry,
        )
        self.commit = Histogram(
            "edgestate_commit_seconds",
            "Durable commit of an invocation's writes.",
            ["module"],
            buckets=_US_BUCKETS,
            registry=self.registry,
        )
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


__all__ = ["NodeMetrics", "counter", "gauge"]
