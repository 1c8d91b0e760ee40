"""On a real node: modules burning their budgets do not take the node with them.

Invocations run on the runtime's thread pool under the admission rule (README,
"Containment"): a well-behaved module keeps being served and /healthz answers
while others spin or loop on host calls until their budgets end them, and a
module past its concurrency cap is refused with 503 ``busy``. No timed asserts:
the latencies are measured by scripts/bench_containment.py.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from edgestate.devkit import Publisher, make_publisher
from tests.node.api_check import call
from tests.node.conftest import NodeProcess, eventually, start_node
from tests.node.test_modules_e2e import deploy, invoke, wat_bundle

pytestmark = pytest.mark.timeout(120)

FUEL = 10**11  # far past what a budget lets a spin burn: the wall clock ends it
CAP = 2


@pytest.fixture(scope="module")
def publisher(tmp_path_factory: pytest.TempPathFactory) -> Publisher:
    return make_publisher(tmp_path_factory.mktemp("pub"), fuel=FUEL, wall_time_ms=3000)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory, publisher: Publisher) -> Iterator[NodeProcess]:
    root = tmp_path_factory.mktemp("containment")
    data = root / "data"
    data.mkdir()
    shutil.copy(publisher.policy_path, data / "trust-policy.json")
    config = root / "node.toml"
    # No queue: the invocation past the cap is refused at once, whatever the timing.
    config.write_text(
        f"[runtime.admission]\nthreads = 8\nmax_running_per_module = {CAP}\n"
        "max_queued_per_module = 0\nretry_after_s = 2\n"
    )
    n = start_node(data, "--no-mdns", config=config)
    for name, wat, limits in (
        ("noop", "noop", {}),
        ("spin", "infinite_loop", {"fuel": FUEL, "wall_time_ms": 300}),
        ("hostloop", "kv_get_forever", {"fuel": FUEL, "wall_time_ms": 300, "memory_pages": 20}),
        ("slowspin", "log_then_spin", {"fuel": FUEL, "wall_time_ms": 3000}),
    ):
        assert deploy(n, wat_bundle(publisher, name, wat, **limits)).status == 201
    yield n
    assert n.stop() == 0, n.log()


def noop(node: NodeProcess) -> int:
    # Unvalidated: the OpenAPI validator takes an empty 200 body for a missing one.
    return call(
        node.api,
        "POST",
        "/v1/invoke/noop",
        b"",
        content_type="application/octet-stream",
        validate=False,
    ).status


def outcomes(node: NodeProcess, module: str) -> dict[str, float]:
    text = call(node.api, "GET", "/metrics").body.decode()
    return {
        s.labels["outcome"]: s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == "edgestate_invocations_total" and s.labels.get("module") == module
    }


def test_a_well_behaved_module_is_served_while_others_burn_their_budgets(
    node: NodeProcess,
) -> None:
    done = threading.Event()
    hostile: dict[str, list[tuple[int, str]]] = {"spin": [], "hostloop": [], "slowspin": []}

    def attack(module: str) -> None:
        # At least one whole budget each, then until the well-behaved client is done.
        while True:
            reply = invoke(node, module, b"")
            hostile[module].append((reply.status, reply.json()["error"]["code"]))
            if done.is_set() or module == "slowspin":
                return

    log_start = node.log_path.stat().st_size
    attackers = [threading.Thread(target=attack, args=(m,), daemon=True) for m in hostile]
    for t in attackers:
        t.start()
    try:
        eventually(lambda: "[slowspin] spinning" in node.log()[log_start:], what="slowspin running")
        served = [noop(node) for _ in range(100)]
        health = [call(node.api, "GET", "/healthz").status for _ in range(20)]
        # Order, not time: all of that was answered while a 3 s spin was still
        # running (on the event loop itself, none of it could have been).
        slow_still_running = not hostile["slowspin"]
    finally:
        done.set()
        for t in attackers:
            t.join()
    assert served == [200] * 100  # no 503: the noop module never reaches its cap
    assert health == [200] * 20
    assert slow_still_running
    for module, replies in hostile.items():
        assert replies and set(replies) == {(504, "deadline_exceeded")}, module
        assert outcomes(node, module)["deadline_exceeded"] == len(replies)


def test_the_invocation_past_a_modules_cap_is_refused_busy(node: NodeProcess) -> None:
    log_start = node.log_path.stat().st_size
    replies: list[tuple[int, str]] = []

    def slow() -> None:
        reply = invoke(node, "slowspin", b"")
        replies.append((reply.status, reply.json()["error"]["code"]))

    running = [threading.Thread(target=slow, daemon=True) for _ in range(CAP)]
    for t in running:
        t.start()
    try:
        # Each logs once it holds its slot (its instance is running).
        eventually(
            lambda: node.log()[log_start:].count("[slowspin] spinning") >= CAP,
            what="both slow invocations running",
        )
        refused = invoke(node, "slowspin", b"")
        assert refused.status == 503
        assert refused.json()["error"]["code"] == "busy"
        assert refused.headers["Retry-After"] == "2"
        assert noop(node) == 200  # other modules are unaffected
        assert call(node.api, "GET", "/healthz").status == 200
    finally:
        for t in running:
            t.join()
    assert replies == [(504, "deadline_exceeded")] * CAP
    assert outcomes(node, "slowspin")["busy"] == 1
    assert noop(node) == 200
