"""HTTP request counts and latencies by route template, method and status.

Recorded by the API middleware of the node and of each invocation worker (a
worker reports the invocations it served to the node, like their outcomes), and
exported at scrape time from :class:`~edgestate.node.metrics.NodeMetrics`. The
route label is aiohttp's canonical path (``/v1/admin/docs/{doc}/keys/{key}``),
never the raw path, and methods outside the known set share one label, so no
client can mint series (and node memory) by inventing paths or verbs.
"""

from __future__ import annotations

from collections.abc import Iterable

from aiohttp import web
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric

from edgestate.node.histogram import LatencyHistogram

# API answers run from well under a millisecond (health, a key read) to seconds
# (a bundle deploy compiling a module); a watch stream or /yjs socket lands in +Inf.
HTTP_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
# A request no route matched: its path is the client's invention, never a label.
UNMATCHED = "unmatched"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})


def route_of(request: web.Request) -> str:
    """The canonical path of the route that served ``request``, or ``unmatched``."""
    resource = request.match_info.route.resource
    return UNMATCHED if resource is None else resource.canonical


def method_of(request: web.Request) -> str:
    """The request's method, or ``other`` for one outside the known set."""
    method = request.method
    return method if method in _METHODS else "other"


class HttpMetrics:
    """Per (route, method, status): a latency histogram whose count is the request count.

    The event loop is the only writer (no lock); one dict lookup and one bisect per
    request (see scripts/bench_http_metrics.py for what it costs).
    """

    def __init__(self) -> None:
        self._series: dict[tuple[str, str, int], LatencyHistogram] = {}

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        """Record one answered request."""
        key = (route, method, status)
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = LatencyHistogram(HTTP_BUCKETS)
        series.observe(seconds)

    def collect(self) -> Iterable[Metric]:
        """``edgestate_http_requests_total`` and ``edgestate_http_request_duration_seconds``."""
        labels = ["route", "method", "status"]
        total = CounterMetricFamily(
            "edgestate_http_requests",
            "API requests answered, by route template, method and status "
            "(invocations served by workers included).",
            labels=labels,
        )
        duration = HistogramMetricFamily(
            "edgestate_http_request_duration_seconds",
            "Time from the request reaching the API middleware to its answer.",
            labels=labels,
        )
        for (route, method, status), series in sorted(self._series.items()):
            values = [route, method, str(status)]
            buckets = series.buckets()
            total.add_metric(values, buckets[-1][1])
            duration.add_metric(values, buckets, series.sum)
        return [total, duration]


__all__ = ["HTTP_BUCKETS", "UNMATCHED", "HttpMetrics", "method_of", "route_of"]
