"""A watcher gone before its stream began is counted as gone, not as an error,
and leaves no traceback in the node's log.

The watch route prepared its response outside the guard that covers its writes:
for a client that closed its connection before the node answered, prepare's
"Cannot write to closing transport" reached the API middleware, which took it
for a request body cut short: a 400 bad_request in edgestate_http_errors_total.
"""

from __future__ import annotations

import re
import signal
import socket
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.node.api_check import call
from tests.node.conftest import NodeProcess, eventually, start_node

pytestmark = pytest.mark.timeout(120)

_WATCHES = 5


def _watch_statuses(n: NodeProcess) -> dict[str, float]:
    """edgestate_http_requests_total of the watch route, by status."""
    text = call(n.api, "GET", "/metrics").body.decode()
    found = re.findall(
        r'^edgestate_http_requests_total\{method="GET",route="/v1/admin/docs/\{doc\}/watch",'
        r'status="(\d+)"\} (\S+)$',
        text,
        re.MULTILINE,
    )
    return {status: float(count) for status, count in found}


def test_a_watcher_gone_before_its_stream_is_gone_not_an_error(tmp_path: Path) -> None:
    # In process (no workers): the client's connection is the watch route's own.
    n = start_node(tmp_path / "data", "--no-mdns", "--workers", "0")
    try:
        n.client.put("watched", "k", b"v", create=True)
        url = urlsplit(n.api)
        assert url.hostname is not None and url.port is not None
        head = (
            f"GET /v1/admin/docs/watched/watch HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: Bearer {n.token}\r\n\r\n"
        ).encode()
        # Stopped, the node reads each request together with its client's close,
        # so its route meets a closing transport at prepare (no timing involved).
        n.proc.send_signal(signal.SIGSTOP)
        try:
            for _ in range(_WATCHES):
                with socket.create_connection((url.hostname, url.port), timeout=10) as conn:
                    conn.sendall(head)
        finally:
            n.proc.send_signal(signal.SIGCONT)
        # Before the fix: {"400": 5.0}, and edgestate_http_errors_total{code="bad_request"}.
        eventually(lambda: sum(_watch_statuses(n).values()) == _WATCHES, 20, "every watch answered")
        assert _watch_statuses(n) == {"499": _WATCHES}
        assert "edgestate_http_errors_total{" not in call(n.api, "GET", "/metrics").body.decode()
        assert n.client.status()["watchers"] == 0
    finally:
        n.stop()
    assert "Traceback" not in n.log(), n.log()[-3000:]
