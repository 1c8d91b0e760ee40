"""/healthz in an invocation worker: answered there, from the node's heartbeat.

On a real node with two workers: under 2 spinning and 2 host-call-looping
invocations, /healthz keeps answering 200 from the worker itself; while the node
process is stopped (SIGSTOP) a worker answers 503 ``node_unresponsive``, so the
200 is not a cached answer; after SIGCONT it is 200 again. No timed asserts:
scripts/bench_containment.py measures the latencies.
"""

from __future__ import annotations

import shutil
import signal
import threading
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from edgestate.devkit import make_publisher
from tests.node.api_check import Reply, call
from tests.node.conftest import NodeProcess, background_load, eventually, start_node
from tests.node.test_modules_e2e import deploy, invoke, wat_bundle

pytestmark = pytest.mark.timeout(120)

FUEL = 10**11  # the wall clock ends the loops, never the fuel
PROBES = 200


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    root = tmp_path_factory.mktemp("liveness")
    publisher = make_publisher(root / "pub", fuel=FUEL, wall_time_ms=1000)
    data = root / "data"
    data.mkdir()
    shutil.copy(publisher.policy_path, data / "trust-policy.json")
    config = root / "node.toml"
    config.write_text("[api]\nworkers = 2\nspare_worker = false\n")
    n = start_node(data, "--no-mdns", config=config)
    try:
        for name, wat, limits in (
            ("spin", "infinite_loop", {"fuel": FUEL, "wall_time_ms": 300}),
            ("hostloop", "kv_get_forever", {"fuel": FUEL, "wall_time_ms": 300, "memory_pages": 20}),
        ):
            assert deploy(n, wat_bundle(publisher, name, wat, **limits)).status == 201
        yield n
    finally:
        assert n.stop() == 0, n.log()


def healthz(node: NodeProcess) -> Reply:
    return call(node.api, "GET", "/healthz")


def healthz_count(node: NodeProcess) -> float:
    """edgestate_http_requests_total of GET /healthz 200, as the node counts it."""
    text = call(node.api, "GET", "/metrics").body.decode()
    return sum(
        s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == "edgestate_http_requests_total"
        and s.labels == {"route": "/healthz", "method": "GET", "status": "200"}
    )


def test_healthz_answers_from_the_worker_under_attack(node: NodeProcess) -> None:
    outcomes: list[tuple[int, str]] = []
    lock = threading.Lock()
    counted = healthz_count(node)

    def attack(module: str, stop: threading.Event) -> None:
        while not stop.is_set():
            reply = invoke(node, module, b"")
            with lock:
                outcomes.append((reply.status, reply.json()["error"]["code"]))

    with background_load(attack, [("spin",), ("spin",), ("hostloop",), ("hostloop",)]):
        eventually(lambda: len(outcomes) >= 4, what="every attacker ran once")
        probes = [healthz(node) for _ in range(PROBES)]
    assert [p.status for p in probes] == [200] * PROBES
    # Answered by a worker (the node's own answer carries no worker header).
    assert all(p.headers.get("X-Edgestate-Worker") in {"0", "1"} for p in probes)
    assert set(outcomes) == {(504, "deadline_exceeded")}
    # Answered in the workers, still counted once each in the node's metrics.
    eventually(lambda: healthz_count(node) == counted + PROBES, what="the probes counted")


def test_healthz_is_503_while_the_node_is_stopped(node: NodeProcess) -> None:
    assert healthz(node).status == 200
    node.proc.send_signal(signal.SIGSTOP)
    try:
        stalled = eventually(
            lambda: (r := healthz(node)).status == 503 and r, timeout=15, what="a 503"
        )
    finally:
        node.proc.send_signal(signal.SIGCONT)
    error = stalled.json()["error"]
    assert error["code"] == "node_unresponsive"
    assert "no heartbeat from the node" in error["message"]
    eventually(lambda: healthz(node).status == 200, what="healthy again after SIGCONT")
