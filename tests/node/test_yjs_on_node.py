"""The real npm Yjs client against a node's /yjs/{doc}: module writes in, JS writes out."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edgestate.devkit import example_bundle, make_publisher
from tests.node.api_check import call
from tests.node.conftest import NodeProcess, eventually, start_node

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def node(tmp_path: Path) -> Iterator[NodeProcess]:
    publisher = make_publisher(tmp_path / "pub")
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(publisher.policy_path, data / "trust-policy.json")
    n = start_node(data, "--no-mdns")
    bundle = example_bundle("kv_echo", publisher, REPO / "build" / "guest-wasm")
    n.client.deploy(bundle.wasm, bundle.manifest, bundle.signature)
    yield n
    n.stop()


def _line(proc: subprocess.Popen[str], timeout: float = 20) -> dict[str, Any]:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    line = proc.stdout.readline()
    assert line, f"client ended early (rc={proc.poll()})"
    assert time.monotonic() < deadline
    return dict(json.loads(line))


def test_js_client_sees_module_writes_and_its_writes_reach_modules(
    node: NodeProcess, js_client: Path
) -> None:
    out, _ = node.client.invoke("kv-echo", b"greeting=hello from wasm")
    assert out == b"hello from wasm"
    ws = node.api.replace("http://", "ws://") + "/yjs"
    proc = subprocess.Popen(
        ["node", str(js_client), ws, "kv", node.token],
        cwd=js_client.parent,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        synced = _line(proc)
        assert synced["event"] == "synced"
        assert bytes(synced["root"]["greeting"]) == b"hello from wasm"
        node.client.invoke("kv-echo", b"later=written after connect")
        seen = _line(proc)
        assert seen == {"event": "seen", "key": "later", "value": list(b"written after connect")}

        def js_write_landed() -> bool:
            got = node.client.get("kv", "from-js")
            return bool(got["found"]) and base64.b64decode(got["base64"]) == b"\x01\x02\x03"

        eventually(js_write_landed, 10, "the JS client's write reaching the node")
        out, _ = node.client.invoke("kv-echo", b"from-js")  # a module reads the JS write
        assert out == b"\x01\x02\x03"
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=10)
        if proc.stdout:
            proc.stdout.close()


def test_yjs_endpoint_needs_the_token(node: NodeProcess) -> None:
    reply = call(
        node.api,
        "GET",
        "/yjs/kv",
        validate=False,
        headers={"Connection": "Upgrade", "Upgrade": "websocket"},
    )
    assert reply.status == 401
    wrong = call(node.api, "GET", "/yjs/kv", validate=False, query={"token": "nope"})
    assert wrong.status == 401 and wrong.json()["error"]["code"] == "invalid_token"
