"""A client that leaves while a worker relays its request to the node is not an
error: the answer has nowhere to go, and the node's log stays free of tracebacks
(seen in CI: "Cannot write to closing transport" from the relay's prepare)."""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from edgestate.client import NodeAPIError
from tests.node.api_check import call
from tests.node.conftest import NodeProcess, eventually, start_node

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    n = start_node(tmp_path_factory.mktemp("relay-gone") / "data", "--no-mdns", "--workers", "2")
    try:
        yield n
    finally:
        n.stop()


def _ask_and_leave(api: str, path: str, token: str) -> None:
    """Send one relayed request and reset the connection before the answer."""
    url = urlsplit(api)
    with socket.create_connection((url.hostname, url.port), timeout=10) as conn:
        # SO_LINGER 0: close() resets the connection, as a client that vanished.
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.sendall(
            f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n".encode()
        )


def test_clients_gone_before_a_relayed_answer_leave_no_traceback(
    node: NodeProcess, tmp_path: Path
) -> None:
    for _ in range(200):
        for path in ("/v1/admin/status", "/readyz", "/metrics"):
            _ask_and_leave(node.api, path, node.token)
    assert call(node.api, "GET", "/healthz").status == 200

    def serves() -> bool:
        # Right after such a storm one relayed request may still meet a broken
        # connection to the node (503 node_link_lost, ENOTCONN): seen once in six
        # runs, then served; noted for later.
        try:
            return bool(node.client.status())
        except NodeAPIError:
            return False

    eventually(serves, 20, "the node serving admin requests through a worker")
    assert "Traceback" not in node.log()
