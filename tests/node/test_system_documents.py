"""The node's own documents (``_`` prefix) are written only by the node: every
user-facing write path refuses them by name, against a real node process; and
names breaking the one rule are refused at the API and ``/yjs`` edges."""

from __future__ import annotations

import asyncio
import http.client
import json
import subprocess
import sys
import urllib.parse
from pathlib import Path

import aiohttp
import pytest
from pycrdt import Doc, Map, YSyncMessageType

from edgestate.sync.yjs import sync_message
from tests.node.api_check import call
from tests.node.conftest import NodeProcess, start_node

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> NodeProcess:
    n = start_node(tmp_path_factory.mktemp("sysdocs") / "data", "--no-mdns")
    yield n  # type: ignore[misc]
    n.stop()


def _modules_state(node: NodeProcess) -> tuple[object, object]:
    info = next(d for d in node.client.documents() if d["name"] == "_modules")
    return node.client.modules(), info


def test_kv_put_to_modules_through_the_node_is_refused(node: NodeProcess) -> None:
    before = _modules_state(node)
    result = subprocess.run(
        [sys.executable, "-m", "edgestate.cli.main", "kv", "--node", node.api,
         "--token", node.token, "put", "_modules", "junk", "value"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    assert "error: system_document: " in result.stderr
    assert _modules_state(node) == before
    assert all(m.get("name") != "junk" for m in node.client.modules())


@pytest.mark.parametrize(
    ("method", "path", "body", "query"),
    [
        ("PUT", "/v1/admin/docs/_modules/keys/junk", b"v", {"create": "true"}),
        ("DELETE", "/v1/admin/docs/_modules/keys/junk", None, None),
        ("POST", "/v1/admin/docs/_modules/keys/n/incr", b"", None),
        ("POST", "/v1/admin/docs/_modules/batch", b'{"ops": [{"op": "delete", "key": "k"}]}', None),
        ("PUT", "/v1/admin/docs/_mine/keys/k", b"v", {"create": "true"}),
    ],
)
def test_every_admin_write_route_refuses_system_documents(
    node: NodeProcess, method: str, path: str, body: bytes | None, query: dict[str, str] | None
) -> None:
    before = _modules_state(node)
    reply = call(node.api, method, path, body, token=node.token, query=query)
    assert reply.status == 403 and reply.json()["error"]["code"] == "system_document"
    assert _modules_state(node) == before
    assert "_mine" not in {d["name"] for d in node.client.documents()}
    # Reads stay allowed.
    assert call(node.api, "GET", "/v1/admin/docs/_modules/scan", token=node.token).status == 200


@pytest.mark.parametrize("name", ["%2E%2E", "%2E", "CON", "nul.txt", "a."])
def test_invalid_names_are_refused_by_the_admin_api(node: NodeProcess, name: str) -> None:
    # Raw request line: the client must not normalize "%2E%2E" away.
    parsed = urllib.parse.urlsplit(node.api)
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=30)
    conn.request(
        "PUT",
        f"/v1/admin/docs/{name}/keys/a?create=true",
        body=b"v",
        headers={"Authorization": f"Bearer {node.token}"},
    )
    reply = conn.getresponse()
    body = json.loads(reply.read())
    conn.close()
    assert reply.status == 400 and body["error"]["code"] == "invalid_document_name", body
    names = {d["name"] for d in node.client.documents()}
    assert not names & {".", "..", "CON", "nul.txt", "a."}


def test_local_kv_writes_refuse_system_documents(tmp_path: Path) -> None:
    data = tmp_path / "bare"
    for args in (["put", "_modules", "junk", "v"], ["incr", "_x", "n"], ["delete", "_x", "k"]):
        result = subprocess.run(
            [sys.executable, "-m", "edgestate.cli.main", "kv", "--data", str(data), *args],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert result.returncode == 1 and "error: system_document: " in result.stderr, args


async def _yjs_write(node: NodeProcess, doc: str) -> tuple[int | None, int]:
    """Connect to /yjs/DOC, send one update; (close code, HTTP status of the handshake)."""
    url = node.api.replace("http://", "ws://") + f"/yjs/{doc}"
    headers = {"Authorization": f"Bearer {node.token}"}
    update_doc: Doc = Doc()
    update_doc["root"] = root = Map()
    root["junk"] = "x"
    update = update_doc.get_update()
    async with aiohttp.ClientSession() as session:
        try:
            ws = await session.ws_connect(url, headers=headers)
        except aiohttp.WSServerHandshakeError as exc:
            return None, exc.status
        async with ws:
            await ws.receive(timeout=10)  # the node's step 1: reading is fine
            await ws.send_bytes(sync_message(YSyncMessageType.SYNC_UPDATE, update))
            async with asyncio.timeout(10):
                while not ws.closed:
                    await ws.receive()
            return ws.close_code, 101


def test_yjs_writes_to_system_documents_are_refused(node: NodeProcess) -> None:
    before = _modules_state(node)
    code, _ = asyncio.run(_yjs_write(node, "_modules"))
    assert code == aiohttp.WSCloseCode.POLICY_VIOLATION
    assert _modules_state(node) == before
    _, status = asyncio.run(_yjs_write(node, "_fresh"))
    assert status == 403
    assert "_fresh" not in {d["name"] for d in node.client.documents()}
    _, status = asyncio.run(_yjs_write(node, "CON"))
    assert status == 400
