"""The API port with invocation workers (workers/listen.py): one SO_REUSEPORT socket
per worker, so keep-alive connections spread over the workers, and a dead worker's
queue is served by its replacement; one shared socket without ``api.reuse_port``."""

from __future__ import annotations

import http.client
import os
import selectors
import shutil
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from edgestate.devkit import example_bundle, make_publisher
from edgestate.errors import ListenError
from edgestate.node.config import ApiConfig
from edgestate.node.workers.listen import listeners, reuse_port_available
from tests.node.conftest import NodeProcess, eventually, start_node
from tests.node.test_modules_e2e import BUILD, deploy
from tests.node.test_workers import metrics_text, worker_processes

pytestmark = pytest.mark.timeout(180)

needs_reuse_port = pytest.mark.skipif(
    not reuse_port_available(), reason="SO_REUSEPORT balancing is Linux's"
)


def accept_all(socks: list[socket.socket], expected: int) -> list[int]:
    """Accept ``expected`` connections from ``socks``; how many each one queued."""
    counts = [0] * len(socks)
    with selectors.DefaultSelector() as sel:
        for i, s in enumerate(socks):
            sel.register(s, selectors.EVENT_READ, i)
        while sum(counts) < expected:
            ready = sel.select(timeout=10)
            assert ready, f"only {sum(counts)} of {expected} connections arrived"
            for key, _ in ready:
                conn, _ = key.fileobj.accept()  # type: ignore[union-attr]
                conn.close()
                counts[key.data] += 1
    return counts


@needs_reuse_port
def test_one_socket_per_worker_on_one_port_and_the_kernel_spreads_connections() -> None:
    socks = listeners(ApiConfig(host="127.0.0.1", port=0, reuse_port=True), 3)
    clients: list[socket.socket] = []
    try:
        assert len(socks) == 3
        assert len({s.getsockname() for s in socks}) == 1
        port = socks[0].getsockname()[1]
        for _ in range(60):
            clients.append(socket.create_connection(("127.0.0.1", port), timeout=10))
        counts = accept_all(socks, 60)
        # 60 connections hashed over 3 queues: all on one has probability ~1e-28.
        assert sum(counts) == 60 and sum(1 for c in counts if c) >= 2, counts
    finally:
        for s in clients + socks:
            s.close()


def test_one_shared_socket_without_reuse_port_or_with_one_worker() -> None:
    for api, workers in (
        (ApiConfig(host="127.0.0.1", port=0, reuse_port=False), 4),
        (ApiConfig(host="127.0.0.1", port=0), 1),
    ):
        socks = listeners(api, workers)
        try:
            assert len(socks) == 1
        finally:
            for s in socks:
                s.close()


@needs_reuse_port
def test_a_port_another_program_listens_on_is_refused_not_joined() -> None:
    # That program set SO_REUSEPORT too: without the plain probe, the node would
    # silently share its connections.
    other = socket.socket()
    other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    other.bind(("127.0.0.1", 0))
    other.listen()
    try:
        api = ApiConfig(host="127.0.0.1", port=other.getsockname()[1], reuse_port=True)
        with pytest.raises(ListenError, match="already in use") as caught:
            listeners(api, 2)
        assert caught.value.code == "listen_failed"
    finally:
        other.close()


@pytest.fixture
def node(tmp_path: Path) -> Iterator[NodeProcess]:
    publisher = make_publisher(tmp_path / "publisher")
    data = tmp_path / "node"
    data.mkdir()
    shutil.copy(publisher.policy_path, data / "trust-policy.json")
    n = start_node(data, "--no-mdns", "--workers", "2")
    try:
        assert deploy(n, example_bundle("kv_echo", publisher, BUILD)).status == 201
        yield n
    finally:
        n.stop()


def keep_alive_round(api: str, connections: int, requests: int) -> dict[str, int]:
    """``connections`` keep-alive clients, ``requests`` each: answers per worker."""
    host, port = api.removeprefix("http://").split(":")
    conns = [http.client.HTTPConnection(host, int(port), timeout=30) for _ in range(connections)]
    seen: dict[str, int] = {}
    try:
        for n in range(requests):
            for i, conn in enumerate(conns):
                conn.request("POST", "/v1/invoke/kv-echo", f"c{i}={n}".encode())
                resp = conn.getresponse()
                assert (resp.status, resp.read()) == (200, str(n).encode())
                worker = resp.getheader("X-Edgestate-Worker", "?")
                seen[worker] = seen.get(worker, 0) + 1
    finally:
        for conn in conns:
            conn.close()
    return seen


def served(node: NodeProcess) -> dict[str, float]:
    return {
        s.labels["worker"]: s.value
        for f in text_string_to_metric_families(metrics_text(node))
        for s in f.samples
        if s.name == "edgestate_worker_invocations_total"
    }


@needs_reuse_port
def test_keep_alive_clients_spread_over_workers_and_survive_a_worker_death(
    node: NodeProcess,
) -> None:
    seen = keep_alive_round(node.api, 16, 3)
    # 16 connections hashed over 2 queues: all on one has probability 3e-5.
    assert set(seen) == {"0", "1"}, seen
    eventually(lambda: sum(served(node).values()) >= 48 or None, what="reported counts")
    assert set(served(node)) == {"0", "1"}
    first = eventually(lambda: (p := worker_processes(node)).get("spare") and p, what="spare")
    os.kill(first["worker-0"], signal.SIGKILL)
    eventually(
        lambda: worker_processes(node).get("worker-0") not in (None, first["worker-0"]),
        what="a replacement of worker 0",
    )
    # Connections the kernel hashes to worker 0's socket are accepted by its
    # replacement: every one is answered, by both indexes.
    assert set(keep_alive_round(node.api, 16, 1)) == {"0", "1"}
    assert node.proc.poll() is None


@needs_reuse_port
def test_workers_started_from_scratch_get_their_own_sockets_too(tmp_path: Path) -> None:
    # api.fork_server = false: the sockets pass by pass_fds, not SCM_RIGHTS.
    publisher = make_publisher(tmp_path / "publisher")
    data = tmp_path / "node"
    data.mkdir()
    shutil.copy(publisher.policy_path, data / "trust-policy.json")
    config = tmp_path / "node.toml"
    config.write_text("[api]\nworkers = 2\nfork_server = false\nspare_worker = false\n")
    n = start_node(data, "--no-mdns", config=config)
    try:
        assert deploy(n, example_bundle("kv_echo", publisher, BUILD)).status == 201
        assert set(keep_alive_round(n.api, 16, 2)) == {"0", "1"}
    finally:
        n.stop()
