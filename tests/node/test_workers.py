"""Invocation workers (api.workers > 0) on real node processes and sockets.

Writes from many workers at once are durable and visible; a worker killed with
-9 under write load is replaced and loses no acknowledged write; deploy, upgrade
and removal reach every worker; one /metrics counts every worker's invocations.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from prometheus_client.parser import text_string_to_metric_families

from edgestate.devkit import Bundle, Publisher, example_bundle, make_publisher
from tests.node.conftest import NodeProcess, background_load, eventually, start_node
from tests.node.test_modules_e2e import BUILD, deploy, wat_bundle

WORKERS = 2


@pytest.fixture(scope="module")
def publisher(tmp_path_factory: pytest.TempPathFactory) -> Publisher:
    return make_publisher(tmp_path_factory.mktemp("publisher"))


@pytest.fixture
def node(tmp_path: Path, publisher: Publisher) -> Iterator[NodeProcess]:
    data = tmp_path / "node"
    data.mkdir()
    shutil.copy(publisher.policy_path, data / "trust-policy.json")
    n = start_node(data, "--no-mdns", "--workers", str(WORKERS))
    try:
        deploy(n, example_bundle("kv_echo", publisher, BUILD))
        yield n
    finally:
        n.stop()


def post(api: str, path: str, body: bytes) -> tuple[int, bytes, dict[str, str]]:
    """One request on a fresh connection (so the accept queue spreads them)."""
    url = urlsplit(api)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    try:
        conn.request("POST", path, body)
        resp = conn.getresponse()
        return resp.status, resp.read(), dict(resp.getheaders())
    finally:
        conn.close()


def every_worker(api: str, path: str, body: bytes = b"") -> dict[str, tuple[int, bytes]]:
    """The answer of each worker (by X-Edgestate-Worker) to the same request."""
    seen: dict[str, tuple[int, bytes]] = {}
    for _ in range(400):
        status, out, headers = post(api, path, body)
        seen[headers.get("X-Edgestate-Worker", "?")] = (status, out)
        if len(seen) == WORKERS:
            return seen
    raise AssertionError(f"only workers {sorted(seen)} answered")


def worker_processes(node: NodeProcess) -> dict[str, int]:
    """process label (worker-N, spare) -> pid, as the node's /metrics tells them."""
    return {
        s.labels["process"]: int(s.value)
        for f in text_string_to_metric_families(metrics_text(node))
        for s in f.samples
        if s.name == "edgestate_worker_pid"
    }


def worker_pids(node: NodeProcess) -> list[int]:
    """The serving workers' pids (not the spare's), each a live child of the node."""
    pids = [p for label, p in worker_processes(node).items() if label.startswith("worker-")]
    return [p for p in pids if _is_worker(p)]


def all_workers_up(node: NodeProcess) -> list[int] | None:
    """The worker pids once there are WORKERS of them (a restart may be under way)."""
    pids = worker_pids(node)
    return pids if len(pids) == WORKERS else None


def _is_worker(pid: int) -> bool:
    try:
        # Started afresh (workers.main) or forked by the fork server (workers.zygote).
        return b"edgestate.node.workers." in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def metrics_text(node: NodeProcess) -> str:
    url = urlsplit(node.api)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    try:
        conn.request("GET", "/metrics")
        return conn.getresponse().read().decode()
    finally:
        conn.close()


def invocations(node: NodeProcess) -> float:
    text = metrics_text(node)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "edgestate_invocations_total" and sample.labels == {
                "module": "kv-echo",
                "outcome": "ok",
            }:
                return float(sample.value)
    return 0.0


def write_load(api: str, prefix: str, acked: list[str], stop: threading.Event) -> None:
    n = 0
    while not stop.is_set():
        key = f"{prefix}-{n}"
        try:
            status, out, _ = post(api, "/v1/invoke/kv-echo", f"{key}={n}".encode())
        except (OSError, http.client.HTTPException):
            status = 0  # the worker died under it: not acknowledged
        if status == 200 and out == str(n).encode():
            acked.append(key)
        n += 1


def test_writes_from_many_workers_are_durable_and_visible(node: NodeProcess) -> None:
    acked: list[str] = []
    with background_load(write_load, [(node.api, f"c{i}", acked) for i in range(6)]):
        eventually(lambda: len(acked) >= 300, what="300 acknowledged writes")
    assert len(every_worker(node.api, "/v1/invoke/kv-echo", b"probe=1")) == WORKERS
    node.stop()  # a clean stop, then the store read back from disk
    node.proc.wait()
    from edgestate.store import Store

    with Store.open(node.data / "store", readonly=True) as store:
        missing = [k for k in acked if store.get("kv", k) is None]
    assert not missing, missing[:5]


def test_a_worker_killed_under_write_load_is_replaced_and_loses_nothing(
    node: NodeProcess,
) -> None:
    from edgestate.store import Store

    acked: list[str] = []
    for round_ in range(3):
        load = [(node.api, f"r{round_}c{i}", acked) for i in range(4)]
        with background_load(write_load, load):
            want = 50 * (round_ + 1)
            eventually(lambda: len(acked) >= want, what="writes before the kill")  # noqa: B023
            before = eventually(lambda: all_workers_up(node), what="every worker up")
            os.kill(before[0], signal.SIGKILL)
            eventually(
                lambda: len(worker_pids(node)) == WORKERS and before[0] not in worker_pids(node),  # noqa: B023
                what="a replacement worker",
            )
            goal = len(acked) + 50
            eventually(lambda: len(acked) >= goal, what="writes after the restart")  # noqa: B023
        assert node.proc.poll() is None
    status, _, _ = post(node.api, "/v1/invoke/kv-echo", b"last=1")
    assert status == 200
    node.stop(signal.SIGKILL)  # not even a clean stop: acknowledged means fsynced
    with Store.open(node.data / "store", readonly=True) as store:
        missing = [k for k in acked if store.get("kv", k) is None]
    assert not missing, missing[:5]


def test_deploy_upgrade_and_removal_reach_every_worker(
    node: NodeProcess, publisher: Publisher
) -> None:
    v1 = wat_bundle(publisher, "roll", "noop")
    assert deploy(node, v1).status == 201
    assert {s for s, _ in every_worker(node.api, "/v1/invoke/roll").values()} == {200}
    v2 = wat_bundle(publisher, "roll", "status")
    manifest = json.loads(v2.manifest)
    manifest["version"] = "2.0.0"
    raw = json.dumps(manifest).encode()
    v2 = Bundle("roll", v2.wasm, raw, publisher.sign(v2.wasm, raw))
    assert deploy(node, v2).status == 201
    answers = every_worker(node.api, "/v1/invoke/roll")
    assert {s for s, _ in answers.values()} == {422}, answers
    node.client.remove("roll")
    assert {s for s, _ in every_worker(node.api, "/v1/invoke/roll").values()} == {404}


def test_one_metrics_counts_every_workers_invocations(node: NodeProcess) -> None:
    start = invocations(node)
    answers = every_worker(node.api, "/v1/invoke/kv-echo", b"m=1")
    assert len(answers) == WORKERS
    extra = 20
    for i in range(extra):
        assert post(node.api, "/v1/invoke/kv-echo", f"m{i}={i}".encode())[0] == 200
    # reports reach the node one loop turn after the answer: read until they did
    eventually(lambda: invocations(node) >= start + extra + WORKERS, what="all counted")
    text = metrics_text(node)
    assert "edgestate_workers " in text and 'process="worker-1"' in text
