"""One latency series kept as bucket counts, exported at scrape time."""

from __future__ import annotations

import bisect
from collections.abc import Sequence

# Cold start and execution are tens of microseconds; buckets start well below.
US_BUCKETS = (
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

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Sequence[float] = US_BUCKETS) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        """Record one value."""
        self.counts[bisect.bisect_left(self.bounds, seconds)] += 1
        self.sum += seconds

    def buckets(self) -> list[tuple[str, float]]:
        """Cumulative (le, count) pairs, +Inf last."""
        out: list[tuple[str, float]] = []
        running = 0
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += count
            out.append(("+Inf" if bound == float("inf") else repr(bound), running))
        return out


__all__ = ["US_BUCKETS", "LatencyHistogram"]
