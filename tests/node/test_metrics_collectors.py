"""What a real node's /metrics exposes: the standard collectors, build info, HTTP
series by route template and status (worker-served invocations included),
readable module and peer labels, no ``_created`` series; and the Grafana
dashboard in docs/ queries only metrics the node exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

import edgestate
from edgestate.devkit import Publisher, example_bundle, make_publisher
from tests.node.api_check import call
from tests.node.conftest import NodeProcess, eventually, start_node
from tests.node.test_modules_e2e import BUILD, deploy, invoke

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "docs" / "grafana-dashboard.json"
HEX64 = re.compile(r"[0-9a-f]{64}")
INVOKES = 3

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture(scope="module")
def publisher(tmp_path_factory: pytest.TempPathFactory) -> Publisher:
    return make_publisher(tmp_path_factory.mktemp("publisher"))


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory, publisher: Publisher) -> Iterator[NodeProcess]:
    data = tmp_path_factory.mktemp("metrics-node")
    shutil.copy(publisher.policy_path, data / "trust-policy.json")
    n = start_node(data, "--no-mdns")  # one invocation worker (conftest)
    try:
        assert deploy(n, example_bundle("kv_echo", publisher, BUILD)).status == 201
        for _ in range(INVOKES):
            reply = invoke(n, "kv-echo", b"greeting=hello")
            assert reply.status == 200, reply.body
            assert "X-Edgestate-Worker" in reply.headers  # served by the worker
        assert call(n.api, "GET", "/no/such/route", validate=False).status == 404
        missing = call(n.api, "GET", "/v1/admin/docs/nodoc/keys/k1", token=n.token)
        assert missing.status == 404
        yield n
    finally:
        n.stop()


def scrape(node: NodeProcess) -> tuple[str, Samples]:
    text = call(node.api, "GET", "/metrics").body.decode()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    return text, samples


def with_labels(
    samples: Samples, name: str, **labels: str
) -> dict[tuple[tuple[str, str], ...], float]:
    return {
        key: value
        for (n, key), value in samples.items()
        if n == name and labels.items() <= dict(key).items()
    }


def test_standard_collectors_and_build_info(node: NodeProcess) -> None:
    _, samples = scrape(node)
    names = {name for name, _ in samples}
    for name in (
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "python_info",
        "python_gc_objects_collected_total",
    ):
        assert name in names, name
    (build,) = with_labels(samples, "edgestate_build_info")
    labels = dict(build)
    assert labels["version"] == edgestate.__version__
    assert set(labels) == {"version", "python", "wasmtime", "pycrdt"}
    assert all(v and v != "unknown" for v in labels.values()), labels
    assert not [n for n in names if n.endswith("_created")]


def test_http_series_by_route_template_and_status(node: NodeProcess) -> None:
    _, samples = scrape(node)
    total = "edgestate_http_requests_total"
    invoked = with_labels(samples, total, route="/v1/invoke/{module}", method="POST")
    assert invoked == {
        (("method", "POST"), ("route", "/v1/invoke/{module}"), ("status", "200")): INVOKES
    }
    assert with_labels(samples, total, route="unmatched", status="404") != {}
    key_route = "/v1/admin/docs/{doc}/keys/{key}"
    assert with_labels(samples, total, route=key_route, method="GET", status="404") != {}
    deploys = with_labels(samples, total, route="/v1/admin/modules", method="POST")
    assert list(deploys.values()) == [1]
    # The histogram's count agrees with the counter, and no raw path is a label.
    count = with_labels(
        samples, "edgestate_http_request_duration_seconds_count", route="/v1/invoke/{module}"
    )
    assert list(count.values()) == [INVOKES]
    routes = {dict(k)["route"] for (n, k) in samples if n == total}
    assert not any("nodoc" in r or "such" in r for r in routes), routes


def test_module_labels_are_names_with_the_hash_beside(node: NodeProcess) -> None:
    _, samples = scrape(node)
    (info,) = with_labels(samples, "edgestate_module_info", module="kv-echo")
    assert HEX64.fullmatch(dict(info)["sha256"])
    assert dict(info)["state"] == "active"
    for (_, labels), _value in samples.items():
        for label in ("module", "peer"):
            value = dict(labels).get(label)
            assert value is None or not HEX64.fullmatch(value), (label, value)


def test_promtool_accepts_the_exposition(node: NodeProcess) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (scripts/bootstrap installs it in CI)")
    text, _ = scrape(node)
    result = subprocess.run(
        [promtool, "check", "metrics"], input=text.encode(), capture_output=True, timeout=60
    )
    # promtool exits 3 for lint findings that are only advice; 1 for a broken exposition.
    assert result.returncode in (0, 3), result.stderr.decode()
    problems = [
        line
        for line in (result.stdout + result.stderr).decode().splitlines()
        if line.strip() and "edgestate_" in line
    ]
    assert problems == []


def test_peer_labels_are_addresses_with_the_node_id_beside(
    node: NodeProcess, tmp_path: Path
) -> None:
    other = start_node(tmp_path / "b", "--no-mdns", "--peer", f"127.0.0.1:{node.sync_port}")
    try:
        eventually(
            lambda: other.client.peers() and other.client.peers()[0]["state"] == "connected",
            what="B connected to A",
        )
        _, samples = scrape(other)
        rows = with_labels(samples, "edgestate_peer_sync_bytes_total", direction="out")
        assert [dict(k)["peer"] for k in rows] == [f"127.0.0.1:{node.sync_port}"]
        assert [dict(k)["node_id"] for k in rows] == [node.node_id]
    finally:
        assert other.stop() == 0, other.log()


def _metric_names(expr: str) -> set[str]:
    # Identifiers followed by a selector, a range or a closing of a function call:
    # every edgestate_/process_/python_ name in a PromQL expression.
    return set(re.findall(r"\b((?:edgestate|process|python)_[a-z0-9_]+)", expr))


def test_grafana_dashboard_queries_only_exported_metrics(node: NodeProcess) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["panels"] and dashboard["title"]
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    exprs += [v["definition"] for v in dashboard["templating"]["list"] if "definition" in v]
    assert exprs
    _, samples = scrape(node)
    exported = {name for name, _ in samples}
    # A series with no sample yet on this node (no peers) is still exported by name
    # in the HELP/TYPE lines of the text.
    text, _ = scrape(node)
    families = set(re.findall(r"^# TYPE (\S+) (\S+)", text, re.M))
    for family, kind in families:
        exported.add(family)
        if kind == "counter":
            exported.add(family + "_total")
        if kind == "histogram":
            exported |= {family + s for s in ("_bucket", "_sum", "_count")}
    used = set().union(*(_metric_names(e) for e in exprs))
    assert used, exprs
    assert used <= exported, sorted(used - exported)


def test_grafana_dashboard_queries_parse(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (scripts/bootstrap installs it in CI)")
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    # Grafana's variables, as Grafana would fill them in.
    filled = [e.replace("$__rate_interval", "5m").replace("$instance", ".*") for e in exprs]
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [{"record": f"dashboard:q{i}", "expr": e} for i, e in enumerate(filled)],
            }
        ]
    }
    path = tmp_path / "rules.json"  # JSON is YAML: promtool reads it as its rules file
    path.write_text(json.dumps(rules))
    result = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, timeout=60
    )
    assert result.returncode == 0, (result.stdout + result.stderr).decode()
