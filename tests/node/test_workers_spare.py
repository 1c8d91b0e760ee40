"""The spare invocation worker (api.spare_worker): loaded beside the workers, fed every
deploy, and serving in a dead worker's place as soon as it is killed; and the fork
server (api.fork_server) the workers are forked from."""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from edgestate.devkit import Publisher, example_bundle, make_publisher
from tests.node.conftest import NodeProcess, eventually, start_node
from tests.node.test_modules_e2e import BUILD, deploy, wat_bundle
from tests.node.test_workers import metrics_text, post, worker_processes

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def node(tmp_path: Path) -> Iterator[tuple[NodeProcess, Publisher]]:
    publisher = make_publisher(tmp_path / "publisher")
    data = tmp_path / "node"
    data.mkdir()
    shutil.copy(publisher.policy_path, data / "trust-policy.json")
    n = start_node(data, "--no-mdns", "--workers", "1")
    try:
        assert deploy(n, example_bundle("kv_echo", publisher, BUILD)).status == 201
        yield n, publisher
    finally:
        n.stop()


def spare_ready(node: NodeProcess) -> dict[str, int] | None:
    """worker-0 and spare pids once the spare is loaded, else None."""
    for family in text_string_to_metric_families(metrics_text(node)):
        for sample in family.samples:
            if sample.name == "edgestate_spare_workers_ready" and sample.value == 1:
                processes = worker_processes(node)
                return processes if {"worker-0", "spare"} <= set(processes) else None
    return None


def test_a_killed_worker_is_replaced_by_the_spare_which_has_every_module(
    node: tuple[NodeProcess, Publisher],
) -> None:
    n, publisher = node
    first = eventually(lambda: spare_ready(n), timeout=60, what="a loaded spare")
    # Deployed after the spare started: it must reach the spare too.
    assert deploy(n, wat_bundle(publisher, "late", "noop")).status == 201
    os.kill(first["worker-0"], signal.SIGKILL)
    after = eventually(
        lambda: (p := worker_processes(n)).get("worker-0") not in (None, first["worker-0"]) and p,
        what="a replacement",
    )
    assert after["worker-0"] == first["spare"]  # the spare took the place, no fresh start
    status, out, headers = post(n.api, "/v1/invoke/kv-echo", b"k=v")
    assert (status, out, headers["X-Edgestate-Worker"]) == (200, b"v", "0")
    status, _, _ = post(n.api, "/v1/invoke/late", b"")
    assert status == 200
    # And a new spare is started for the next death.
    second = eventually(lambda: spare_ready(n), timeout=60, what="a new loaded spare")
    assert second["spare"] not in (first["worker-0"], first["spare"])
    assert n.proc.poll() is None


def parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def test_workers_are_forked_from_the_fork_server(node: tuple[NodeProcess, Publisher]) -> None:
    n, _ = node
    processes = eventually(lambda: spare_ready(n), timeout=60, what="a loaded spare")
    zygote = worker_processes(n)["zygote"]
    assert parent(zygote) == n.proc.pid
    assert parent(processes["worker-0"]) == zygote and parent(processes["spare"]) == zygote


def test_without_spare_or_fork_server_a_killed_worker_is_started_afresh(tmp_path: Path) -> None:
    data = tmp_path / "node"
    config = tmp_path / "node.toml"
    config.write_text("[api]\nworkers = 1\nspare_worker = false\nfork_server = false\n")
    n = start_node(data, "--no-mdns", config=config)
    try:
        first = worker_processes(n)
        assert set(first) == {"worker-0"}
        assert parent(first["worker-0"]) == n.proc.pid
        os.kill(first["worker-0"], signal.SIGKILL)
        eventually(
            lambda: worker_processes(n).get("worker-0") not in (None, first["worker-0"]),
            timeout=60,
            what="a fresh worker",
        )
        assert set(worker_processes(n)) == {"worker-0"}
    finally:
        n.stop()
