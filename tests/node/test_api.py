"""The HTTP API of a real node subprocess, every response checked against the OpenAPI file."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from edgestate.client import NodeClient
from tests.node.api_check import call
from tests.node.conftest import NodeProcess, eventually, start_node
from tests.schemas import validate


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    n = start_node(tmp_path_factory.mktemp("api") / "data", "--no-mdns")
    yield n
    assert n.stop() == 0, n.log()


def test_health_ready_and_metrics_need_no_token(node: NodeProcess) -> None:
    assert call(node.api, "GET", "/healthz").json() == {"ok": True}
    assert call(node.api, "GET", "/readyz").json() == {"ok": True}
    metrics = call(node.api, "GET", "/metrics")
    names = {f.name for f in text_string_to_metric_families(metrics.body.decode())}
    assert {
        "edgestate_invocations",
        "edgestate_cold_start_seconds",
        "edgestate_store_keys",
        "edgestate_peers_connected",
        "edgestate_sync_bytes",
    } <= names


def test_token_and_cache_key_files_are_private(node: NodeProcess) -> None:
    assert (node.data / "admin.token").stat().st_mode & 0o777 == 0o600
    assert (node.data / "cache.key").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize(
    "path", ["/v1/admin/status", "/v1/admin/docs", "/v1/admin/peers", "/v1/admin/modules"]
)
def test_admin_routes_refuse_missing_and_wrong_tokens(node: NodeProcess, path: str) -> None:
    missing = call(node.api, "GET", path)
    assert missing.status == 401 and missing.json()["error"]["code"] == "unauthorized"
    wrong = call(node.api, "GET", path, token="not-the-token")
    assert wrong.status == 403 and wrong.json()["error"]["code"] == "forbidden"
    assert call(node.api, "GET", path, token=node.token).status == 200


def test_status_names_the_node(node: NodeProcess) -> None:
    status = call(node.api, "GET", "/v1/admin/status", token=node.token).json()
    assert status["node_id"] == node.node_id
    assert status["sync_port"] == node.sync_port
    assert status["ready"] is True
    assert status["insecure"] is True


def test_keys_put_get_incr_delete_scan(node: NodeProcess) -> None:
    t = node.token
    put = call(
        node.api,
        "PUT",
        "/v1/admin/docs/apidoc/keys/k1",
        b"\x00\x01v",
        token=t,
        content_type="application/octet-stream",
        query={"create": "true"},
    )
    assert put.status == 200
    got = call(node.api, "GET", "/v1/admin/docs/apidoc/keys/k1", token=t).json()
    assert base64.b64decode(got["base64"]) == b"\x00\x01v" and got["type"] == "bytes"
    incr = call(
        node.api,
        "POST",
        "/v1/admin/docs/apidoc/keys/n/incr",
        b"",
        token=t,
        query={"delta": "-5"},
        content_type="application/octet-stream",
    )
    assert incr.json()["counter"] == -5
    page = call(
        node.api, "GET", "/v1/admin/docs/apidoc/scan", token=t, query={"prefix": "", "limit": "1"}
    ).json()
    assert [i["key"] for i in page["items"]] == ["k1"] and page["cursor"]
    rest = call(
        node.api,
        "GET",
        "/v1/admin/docs/apidoc/scan",
        token=t,
        query={"cursor": page["cursor"], "limit": "10"},
    ).json()
    assert [i["key"] for i in rest["items"]] == ["n"] and rest["items"][0]["counter"] == -5
    assert call(node.api, "DELETE", "/v1/admin/docs/apidoc/keys/k1", token=t).status == 200
    gone = call(node.api, "GET", "/v1/admin/docs/apidoc/keys/k1", token=t)
    assert gone.status == 404 and gone.json()["error"]["code"] == "key_not_found"
    docs = call(node.api, "GET", "/v1/admin/docs", token=t).json()["documents"]
    assert {"apidoc", "_modules"} <= {d["name"] for d in docs}


@pytest.mark.parametrize(
    ("method", "path", "body", "query", "status", "code"),
    [
        ("POST", "/v1/invoke/nope", b"x", None, 404, "unknown_module"),
        ("GET", "/v1/admin/docs/missing/keys/k", None, None, 404, "unknown_document"),
        ("GET", "/v1/admin/docs/bad!name/keys/k", None, None, 400, "invalid_document_name"),
        ("GET", "/v1/admin/docs/_modules/scan", None, {"cursor": "garbage"}, 400, "invalid_cursor"),
        ("GET", "/v1/admin/docs/_modules/scan", None, {"limit": "0"}, 400, "bad_request"),
        ("POST", "/v1/admin/docs/anydoc/keys/k/incr", b"", {"delta": "x"}, 400, "bad_request"),
        ("POST", "/v1/admin/modules", b"{not json", None, 400, "bad_request"),
        (
            "POST",
            "/v1/admin/modules",
            b'{"wasm": "!!", "manifest": "", "signature": ""}',
            None,
            400,
            "bad_request",
        ),
        (
            "POST",
            "/v1/admin/modules",
            json.dumps({"wasm": "AA==", "manifest": "e30=", "signature": "AA=="}).encode(),
            None,
            403,
            "bad_signature",
        ),
        ("DELETE", "/v1/admin/modules/nope", None, None, 404, "unknown_module"),
        (
            "POST",
            "/v1/admin/docs/anydoc/batch",
            b'{"ops": [{"op": "nope", "key": "k"}]}',
            None,
            400,
            "bad_request",
        ),
        ("POST", "/v1/admin/docs/anydoc/batch", b'{"ops": 3}', None, 400, "bad_request"),
    ],
)
def test_bad_requests_get_clear_json_errors(
    node: NodeProcess,
    method: str,
    path: str,
    body: bytes | None,
    query: dict[str, str] | None,
    status: int,
    code: str,
) -> None:
    reply = call(
        node.api,
        method,
        path,
        body,
        token=node.token,
        query=query,
        content_type="application/json"
        if path.endswith(("modules", "batch"))
        else "application/octet-stream",
    )
    assert reply.status == status, reply.body
    assert reply.json()["error"]["code"] == code
    assert call(node.api, "GET", "/readyz").status == 200  # the node keeps serving


def test_oversized_bodies_are_refused(node: NodeProcess) -> None:
    big = b"x" * ((1 << 20) + 1)
    invoke = call(
        node.api, "POST", "/v1/invoke/anything", big, content_type="application/octet-stream"
    )
    assert invoke.status == 413 and invoke.json()["error"]["code"] == "body_too_large"
    admin = call(node.api, "POST", "/v1/admin/modules", b"x" * ((8 << 20) + 1), token=node.token)
    assert admin.status == 413


def test_watch_streams_changes(node: NodeProcess) -> None:
    client = NodeClient(node.api, node.token)
    client.put("watched", "seed", b"s", create=True)
    events: list[dict[str, object]] = []

    def follow() -> None:
        for event in client.watch("watched"):
            events.append(event)
            if len(events) == 2:
                return

    before = client.status()["watchers"]
    t = threading.Thread(target=follow, daemon=True)
    t.start()
    # The subscription is open before the writes.
    eventually(lambda: client.status()["watchers"] > before, 10, "the watch subscribing")
    client.put("watched", "a", b"hello")
    client.incr("watched", "n", 3)
    t.join(timeout=20)
    assert not t.is_alive(), "watch did not deliver two changes"
    changes = [c for e in events for c in e["changes"]]  # type: ignore[attr-defined]
    assert {c["key"] for c in changes} == {"a", "n"}


def test_cli_against_the_running_node(node: NodeProcess, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from edgestate.cli.main import cli

    target = ["--node", node.api, "--token", node.token]
    r = CliRunner().invoke(cli, ["kv", *target, "put", "clidoc", "k", "v", "--create"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(cli, ["inspect", *target, "get", "clidoc", "k", "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["text"] == "v"
    r = CliRunner().invoke(cli, ["kv", *target, "incr", "clidoc", "c", "-4"])
    assert r.stdout.strip() == "-4"
    for command in (["status"], ["peers"], ["modules"], ["inspect", *target, "docs"]):
        args = command if command[0] == "inspect" else [*command, *target]
        r = CliRunner().invoke(cli, args)
        assert r.exit_code == 0, (command, r.output)
    # Over the API the rows carry the same fields as from a directory (the schema).
    r = CliRunner().invoke(cli, ["inspect", *target, "docs", "--json"])
    assert r.exit_code == 0, r.output
    validate("cli/inspect-docs.schema.json", json.loads(r.stdout))
    src = tmp_path / "bulk.jsonl"
    src.write_text("".join(json.dumps({"key": f"b{i}", "value": str(i)}) + "\n" for i in range(50)))
    r = CliRunner().invoke(
        cli, ["kv", *target, "import", "bulkdoc", str(src), "--create", "--batch-size", "20"]
    )
    assert r.exit_code == 0, r.output
    assert NodeClient(node.api, node.token).get("bulkdoc", "b49")["base64"] == "NDk="
    r = CliRunner().invoke(cli, ["status", "--node", node.api, "--token", "wrong"])
    assert r.exit_code == 1 and "forbidden" in r.stderr
    r = CliRunner().invoke(cli, ["status", "--node", "http://127.0.0.1:1", "--token", "x"])
    assert r.exit_code == 1 and "cannot reach" in r.stderr


def test_inspect_reads_a_running_nodes_data_directory(node: NodeProcess) -> None:
    from click.testing import CliRunner

    from edgestate.cli.main import cli

    NodeClient(node.api, node.token).put("inspected", "k", b"live", create=True)
    r = CliRunner().invoke(cli, ["inspect", "--data", str(node.data), "get", "inspected", "k"])
    assert r.exit_code == 0 and r.stdout.strip() == "live"
    # The node holds the writer lock, so a write with --data goes through the node
    # recorded in DATA/node.json (with DATA/admin.token).
    r = CliRunner().invoke(cli, ["kv", "--data", str(node.data), "put", "inspected", "k", "x"])
    assert r.exit_code == 0, r.output
    assert NodeClient(node.api, node.token).get("inspected", "k")["text"] == "x"


def test_watch_command_prints_live_changes(node: NodeProcess) -> None:
    import subprocess
    import sys
    import time

    client = NodeClient(node.api, node.token)
    client.put("cliwatch", "seed", b"s", create=True)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "edgestate.cli.main",
            "watch",
            "cliwatch",
            "--count",
            "1",
            "--node",
            node.api,
            "--token",
            node.token,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        out = ""
        while proc.poll() is None and time.monotonic() < deadline:
            client.put("cliwatch", "greeting", b"hello there")
            time.sleep(0.2)
        out, err = proc.communicate(timeout=10)
        assert proc.returncode == 0, err
        assert "cliwatch/greeting = hello there  [local]" in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_abandoned_watches_are_closed(tmp_path: Path) -> None:
    # Found in review: a watch whose client left stayed open until shutdown when
    # its document was quiet (aiohttp only notices on a write).
    import http.client
    import urllib.parse

    import tomli_w

    config = tmp_path / "node.toml"
    config.write_text(tomli_w.dumps({"api": {"watch_ping_s": 0.2}}))
    n = start_node(tmp_path / "data", "--no-mdns", config=config)
    try:
        client = NodeClient(n.api, n.token)
        client.put("quiet", "k", b"v", create=True)
        url = urllib.parse.urlsplit(n.api)
        for _ in range(5):
            conn = http.client.HTTPConnection(url.hostname or "", url.port, timeout=10)
            conn.request(
                "GET", "/v1/admin/docs/quiet/watch", headers={"Authorization": f"Bearer {n.token}"}
            )
            response = conn.getresponse()
            assert response.status == 200
            response.readline()  # the ": watching" comment: the stream is open
            conn.close()  # and the client is gone
        eventually(lambda: client.status()["watchers"] == 0, 10, "abandoned watches closed")
    finally:
        n.stop()
