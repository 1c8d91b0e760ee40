"""Node metrics are the one count of invocations: one outcome per invocation,
timings from the runtime's result, unknown module names folded into one series."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from edgestate.errors import ModuleNotFoundError_, OutOfFuelError
from edgestate.node.metrics import NodeMetrics
from edgestate.runtime import InvocationResult


def _samples(metrics: NodeMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(metrics.render().decode())
        for s in family.samples
    }


def test_each_invocation_is_counted_once_with_its_timings() -> None:
    metrics = NodeMetrics()
    result = InvocationResult(
        module="m",
        output=b"",
        status=0,
        fuel_used=10,
        instantiate_ns=30_000,
        execute_ns=40_000,
        commit_ns=0,
        writes=0,
        host_calls=3,
    )
    metrics.invoked(result)
    metrics.invoked(result)
    metrics.failed("m", OutOfFuelError("out"))
    metrics.failed("nope", ModuleNotFoundError_("no module named 'nope'"))
    samples = _samples(metrics)
    invocations = {
        labels: value
        for (name, labels), value in samples.items()
        if name == "edgestate_invocations_total"
    }
    assert invocations == {
        (("module", "m"), ("outcome", "ok")): 2,
        (("module", "m"), ("outcome", "out_of_fuel")): 1,
        (("module", "_unknown"), ("outcome", "unknown_module")): 1,
    }
    assert samples[("edgestate_host_calls_total", (("module", "m"),))] == 6
    assert samples[("edgestate_cold_start_seconds_count", (("module", "m"),))] == 2
    assert samples[("edgestate_cold_start_seconds_sum", (("module", "m"),))] == 2 * 30e-6
    assert samples[("edgestate_execution_seconds_sum", (("module", "m"),))] == 2 * 40e-6
