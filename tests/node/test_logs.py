"""A real node's logs: JSON lines with ISO time and structured fields (deploys,
removals, invocations and the guest's own lines carry module and request id),
the access log off by default and token-free when on, bad formats refused."""

from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from edgestate.devkit import Publisher, make_publisher
from tests.node.api_check import call
from tests.node.conftest import NodeProcess, eventually, start_node
from tests.node.test_modules_e2e import deploy, wat_bundle

ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
REQUEST_ID = "trace-0123456789abcdef"


def _json_lines(node: NodeProcess) -> list[dict[str, Any]]:
    lines = [line for line in node.log().splitlines() if line.startswith("{")]
    return [json.loads(line) for line in lines]


def _header(headers: dict[str, str], name: str) -> str:
    return {k.lower(): v for k, v in headers.items()}[name.lower()]


def _node(tmp_path: Path, publisher: Publisher, *extra: str) -> NodeProcess:
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(publisher.policy_path, data / "trust-policy.json")
    return start_node(data, "--no-mdns", "--log-format", "json", *extra)


def test_json_lines_carry_fields_of_deploys_invocations_and_guest_lines(
    tmp_path: Path,
) -> None:
    publisher = make_publisher(tmp_path / "pub")
    node = _node(tmp_path, publisher)
    try:
        assert deploy(node, wat_bundle(publisher, "chatty", "log_flood")).status == 201
        reply = call(
            node.api,
            "POST",
            "/v1/invoke/chatty",
            b"",
            content_type="application/octet-stream",
            headers={"X-Request-Id": REQUEST_ID},
        )
        assert reply.status == 200
        assert _header(reply.headers, "X-Request-Id") == REQUEST_ID
        # An id that is not sane (too long here) is replaced, never echoed or logged.
        bad = call(node.api, "GET", "/healthz", headers={"X-Request-Id": "x" * 500})
        assert re.fullmatch(r"[0-9a-f]{16}", _header(bad.headers, "X-Request-Id"))
        # An error a worker answers itself carries the id and the worker too.
        missing = call(
            node.api,
            "POST",
            "/v1/invoke/nope",
            b"",
            content_type="application/octet-stream",
            headers={"X-Request-Id": REQUEST_ID},
        )
        assert missing.status == 404
        assert _header(missing.headers, "X-Request-Id") == REQUEST_ID
        assert _header(missing.headers, "X-Edgestate-Worker") in {"0", "1"}
        # Relayed by the worker to the node: the node's id comes back.
        admin = call(node.api, "GET", "/v1/admin/status", token=node.token)
        assert re.fullmatch(r"[0-9a-f]{16}", _header(admin.headers, "X-Request-Id"))
        assert call(node.api, "DELETE", "/v1/admin/modules/chatty", token=node.token).status in (
            200,
            204,
        )
        eventually(
            lambda: any(r.get("event") == "remove" for r in _json_lines(node)), what="removal"
        )
    finally:
        assert node.stop() == 0, node.log()
    records = _json_lines(node)
    assert records and all(
        {"time", "level", "logger", "message", "process"} <= set(r) for r in records
    )
    assert all(ISO_UTC.fullmatch(r["time"]) for r in records)
    (deployed,) = [r for r in records if r.get("event") == "deploy"]
    assert deployed["level"] == "info" and deployed["module"] == "chatty"
    assert re.fullmatch(r"[0-9a-f]{64}", deployed["sha256"]) and deployed["version"]
    guest = [r for r in records if r["logger"] == "edgestate.guest" and r.get("module")]
    assert guest, "no guest line"
    assert all(r["module"] == "chatty" for r in guest)
    assert all(r["request_id"] == REQUEST_ID for r in guest)
    assert all(r["process"] == "worker-0" for r in guest)  # the worker logs JSON too
    (removed,) = [r for r in records if r.get("event") == "remove"]
    assert removed["module"] == "chatty" and removed["level"] == "info"
    assert not [r for r in records if r["logger"] == "edgestate.access"]  # off by default


def test_access_log_when_asked_without_tokens(tmp_path: Path) -> None:
    publisher = make_publisher(tmp_path / "pub")
    node = _node(tmp_path, publisher, "--access-log")
    secret = node.token
    try:
        assert call(node.api, "GET", "/v1/admin/docs", token=secret).status == 200
        forged = {"X-Edgestate-Client": "203.0.113.9"}
        reply = call(node.api, "GET", "/v1/admin/docs", token="wrong-token", headers=forged)
        assert reply.status == 403
        yjs = call(
            node.api, "GET", "/yjs/doc", query={"token": secret}, validate=False
        )  # not a WebSocket handshake: refused, and logged without its query
        assert yjs.status >= 400
        assert call(node.api, "POST", "/v1/invoke/nothing", b"", validate=False).status == 404
        eventually(
            lambda: sum(r["logger"] == "edgestate.access" for r in _json_lines(node)) >= 4,
            what="access lines",
        )
    finally:
        assert node.stop() == 0, node.log()
    log = node.log()
    assert secret not in log and "wrong-token" not in log and "203.0.113.9" not in log
    access = [r for r in _json_lines(node) if r["logger"] == "edgestate.access"]
    by_route = {(r["route"], r["status"]): r for r in access}
    docs = by_route[("/v1/admin/docs", 200)]
    assert docs["method"] == "GET" and docs["bytes"] > 0 and docs["duration_ms"] >= 0
    assert re.fullmatch(r"[0-9a-f]{16}", docs["request_id"])
    assert ("/v1/admin/docs", 403) in by_route
    # Relayed by the worker, logged by the node: still the client's address, and a
    # client cannot name its own.
    assert docs["remote"] == "127.0.0.1" and docs["process"] == "node"
    assert by_route[("/v1/admin/docs", 403)]["remote"] == "127.0.0.1"
    assert ("/v1/invoke/{module}", 404) in by_route  # from the worker
    assert by_route[("/v1/invoke/{module}", 404)]["process"] == "worker-0"
    assert all("?" not in r["path"] for r in access)


def test_bad_log_format_is_refused_by_name(tmp_path: Path) -> None:
    cli = [sys.executable, "-m", "edgestate.cli.main", "node", "--data", str(tmp_path / "d")]
    result = subprocess.run([*cli, "--log-format", "xml"], capture_output=True, timeout=60)
    assert result.returncode != 0
    err = result.stderr.decode()
    assert "--log-format" in err and "xml" in err and "json" in err
    config = tmp_path / "node.toml"
    config.write_text('log_format = "yaml"\n')
    result = subprocess.run([*cli, "--config", str(config)], capture_output=True, timeout=60)
    assert result.returncode != 0
    err = result.stderr.decode()
    assert "error: config_error: log_format must be 'text' or 'json', got 'yaml'" in err
    config.write_text('[api]\naccess_log = "yes"\n')
    result = subprocess.run([*cli, "--config", str(config)], capture_output=True, timeout=60)
    assert result.returncode != 0
    assert "error: config_error: api.access_log must be true or false" in result.stderr.decode()


def test_formatters_keep_fields_tracebacks_and_one_line() -> None:
    from edgestate.node.logs import JsonFormatter, TextFormatter

    try:
        raise RuntimeError("boom")
    except RuntimeError:
        record = logging.getLogger("edgestate.sync").makeRecord(
            "edgestate.sync",
            logging.WARNING,
            __file__,
            1,
            "closing sync connection to %s",
            ("n1",),
            sys.exc_info(),
            extra={"fields": {"peer": "n1", "doc": 'a b"c', "level": "forged"}},
        )
    line = JsonFormatter("node").format(record)
    assert "\n" not in line
    out = json.loads(line)
    assert out["peer"] == "n1" and out["doc"] == 'a b"c'
    assert out["level"] == "warning"  # a field never overwrites a fixed key
    assert "RuntimeError: boom" in out["exception"]
    text = TextFormatter("worker-1").format(record)
    first = text.splitlines()[0]
    assert " worker-1 edgestate.sync: closing sync connection to n1 " in first
    assert "peer=n1" in first and 'doc="a b\\"c"' in first
    assert "RuntimeError: boom" in text
