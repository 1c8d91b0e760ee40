"""Over HTTP, on a real node (in-process and with two workers): the wall-time budget
counts from the request's arrival.

A looping guest's 504 carries ``X-Edgestate-Budget-Us``, the budget's clock at the
stop, from its request's arrival: never under the budget, never under the guest's
own run (``X-Edgestate-Execute-Us``, from its start on its thread). With one slot,
requests queued behind a looping guest are answered by their own deadlines: a
504 by the same clock, or 503 ``busy`` when the budget ran out in the queue (before,
each waited for the slot, up to ``queue_wait_ms``, then had a whole budget of its
own). No timed asserts: scripts/bench_containment.py measures how late answers are.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator

import pytest

from edgestate.devkit import make_publisher
from tests.node.api_check import Reply
from tests.node.conftest import NodeProcess, start_node
from tests.node.test_modules_e2e import deploy, invoke, wat_bundle

pytestmark = pytest.mark.timeout(120)

FUEL = 10**11  # the wall clock ends the loop, never the fuel
BUDGET_MS = 300


@pytest.fixture(scope="module", params=[0, 2], ids=["in-process", "workers-2"])
def node(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[NodeProcess]:
    root = tmp_path_factory.mktemp("arrival")
    publisher = make_publisher(root / "pub", fuel=FUEL, wall_time_ms=BUDGET_MS)
    data = root / "data"
    data.mkdir()
    shutil.copy(publisher.policy_path, data / "trust-policy.json")
    config = root / "node.toml"
    # One slot, and a queue wait far past the budget.
    config.write_text(
        f"[api]\nworkers = {request.param}\n"
        + ("spare_worker = false\n" if request.param else "")
        + "[runtime.admission]\nmax_running_per_module = 1\nqueue_wait_ms = 30000\n"
    )
    n = start_node(data, "--no-mdns", config=config)
    try:
        bundle = wat_bundle(publisher, "spin", "infinite_loop", fuel=FUEL, wall_time_ms=BUDGET_MS)
        assert deploy(n, bundle).status == 201
        yield n
    finally:
        assert n.stop() == 0, n.log()


def _check_504(reply: Reply) -> None:
    assert reply.status == 504, reply
    assert reply.json()["error"]["code"] == "deadline_exceeded"
    budget_us = float(reply.headers["X-Edgestate-Budget-Us"])
    ran_us = float(reply.headers["X-Edgestate-Execute-Us"])
    assert budget_us >= BUDGET_MS * 1000  # never early, by the budget's clock
    assert ran_us <= budget_us  # the guest's own run is inside it


def test_a_looping_guest_is_answered_by_the_budget_from_its_arrival(node: NodeProcess) -> None:
    _check_504(invoke(node, "spin", b""))


def test_requests_queued_behind_a_looping_guest_keep_their_deadlines(node: NodeProcess) -> None:
    replies: list[Reply] = []
    lock = threading.Lock()

    def one() -> None:
        reply = invoke(node, "spin", b"")
        with lock:
            replies.append(reply)

    threads = [threading.Thread(target=one) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(replies) == 3
    for reply in replies:
        if reply.status == 503:  # its budget ran out while it waited: nothing ran
            error = reply.json()["error"]
            assert error["code"] == "busy" and "wall-time budget" in error["message"], error
        else:
            _check_504(reply)
