"""Scoped client tokens on a real node's /yjs/{doc}: the npm Yjs client and raw refusals."""

from __future__ import annotations

import asyncio
import json
import queue
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pycrdt import Doc, Map, YSyncMessageType

from edgestate.sync.yjs import ACCESS_ENDED_CLOSE, READ_ONLY_CLOSE, sync_message
from tests.node.api_check import call
from tests.node.conftest import NodeProcess, eventually, start_node

# Bounds every wait on a socket: a test that hangs fails instead.
WAIT_S = 15


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    n = start_node(tmp_path_factory.mktemp("tokens") / "data", "--no-mdns")
    n.client.put("kv", "greeting", b"hello", create=True)
    yield n
    n.stop()


def _refusal(node: NodeProcess, doc: str, token: str | None) -> tuple[int, str]:
    reply = call(
        node.api,
        "GET",
        f"/yjs/{doc}",
        validate=False,
        query={"token": token} if token is not None else None,
        headers={"Connection": "Upgrade", "Upgrade": "websocket"},
    )
    return reply.status, reply.json()["error"]["code"]


def _update(key: str) -> bytes:
    doc: Doc[Any] = Doc()
    doc["root"] = root = Map[Any]()
    root[key] = b"\x09"
    return doc.get_update()


async def _session(
    node: NodeProcess, doc: str, token: str, *, header: bool = False
) -> tuple[aiohttp.ClientSession, aiohttp.ClientWebSocketResponse]:
    url = node.api.replace("http://", "ws://") + f"/yjs/{doc}"
    session = aiohttp.ClientSession()
    try:
        if header:
            ws = await session.ws_connect(url, headers={"Authorization": f"Bearer {token}"})
        else:
            ws = await session.ws_connect(url, params={"token": token})
    except BaseException:
        await session.close()
        raise
    return session, ws


async def _until_closed(ws: aiohttp.ClientWebSocketResponse) -> int | None:
    """The close code the node sent.

    Read from the close frame, not ``ws.close_code``: aiohttp's server tears the
    connection down right after its close frame when it closes from another task,
    so the client's reply may fail and aiohttp then records 1006 locally.
    """
    async with asyncio.timeout(WAIT_S):
        while True:
            msg = await ws.receive()
            if msg.type == aiohttp.WSMsgType.CLOSE:
                return int(msg.data)
            if msg.type == aiohttp.WSMsgType.CLOSED:
                return ws.close_code


async def _sync(ws: aiohttp.ClientWebSocketResponse) -> bytes:
    """Send sync step 1 from an empty doc; the node's step 2 (its whole state)."""
    await ws.send_bytes(sync_message(YSyncMessageType.SYNC_STEP1, b"\x00"))
    async with asyncio.timeout(WAIT_S):
        while True:
            msg = await ws.receive()
            assert msg.type == aiohttp.WSMsgType.BINARY, msg
            if msg.data[1] == YSyncMessageType.SYNC_STEP2:
                return bytes(msg.data)


def _make(node: NodeProcess, *docs: str, **grant: Any) -> dict[str, Any]:
    return node.client.create_token(list(docs), **grant)


def test_a_token_grants_only_its_documents(node: NodeProcess) -> None:
    exact = _make(node, "kv")["token"]
    prefix = _make(node, "team-*", create=True)["token"]
    assert _refusal(node, "other", exact) == (403, "token_scope")
    assert _refusal(node, "kv2", exact) == (403, "token_scope")  # a name is not a prefix
    assert _refusal(node, "teams", prefix) == (403, "token_scope")
    assert _refusal(node, "kv", None) == (401, "invalid_token")
    assert _refusal(node, "kv", "est_000000000000_" + "A" * 43) == (401, "invalid_token")
    assert _refusal(node, "kv", exact[:-1] + ("B" if exact[-1] != "B" else "C")) == (
        401,
        "invalid_token",
    )

    async def connect() -> None:
        for doc, token in (("kv", exact), ("team-a", prefix)):
            session, ws = await _session(node, doc, token)
            async with session:
                await _sync(ws)
                await ws.close()

    asyncio.run(connect())
    assert "team-a" in {d["name"] for d in node.client.documents()}


def test_creating_a_document_is_a_grant_of_its_own(node: NodeProcess) -> None:
    plain = _make(node, "fresh-*")["token"]
    assert _refusal(node, "fresh-1", plain) == (404, "unknown_document")
    assert "fresh-1" not in {d["name"] for d in node.client.documents()}
    creator = _make(node, "fresh-*", create=True)["token"]

    async def connect() -> None:
        session, ws = await _session(node, "fresh-1", creator, header=True)
        async with session:
            await _sync(ws)
            await ws.close()

    asyncio.run(connect())
    assert "fresh-1" in {d["name"] for d in node.client.documents()}


def test_a_read_only_client_syncs_but_its_update_closes_it_unapplied(node: NodeProcess) -> None:
    viewer = _make(node, "kv", read_only=True)["token"]

    async def run() -> int | None:
        session, ws = await _session(node, "kv", viewer)
        async with session:
            step2 = await _sync(ws)
            assert b"hello" in step2  # sync step 2 is served
            await ws.send_bytes(sync_message(YSyncMessageType.SYNC_UPDATE, _update("ro-write")))
            return await _until_closed(ws)

    assert asyncio.run(run()) == READ_ONLY_CLOSE
    assert node.client.get("kv", "ro-write")["found"] is False


def test_expiry_refuses_new_connections_and_closes_live_ones(node: NodeProcess) -> None:
    row = _make(node, "kv", expires_in_s=1.5)

    async def run() -> int | None:
        session, ws = await _session(node, "kv", row["token"])
        async with session:
            await _sync(ws)
            return await _until_closed(ws)  # the node closes it at expiry

    assert asyncio.run(run()) == ACCESS_ENDED_CLOSE
    while time.time() <= row["expires_at"]:
        time.sleep(0.05)
    assert _refusal(node, "kv", row["token"]) == (401, "token_expired")
    states = {r["id"]: r["state"] for r in node.client.tokens()}
    assert states[row["id"]] == "expired"


def test_revoking_closes_live_connections_and_refuses_new_ones(node: NodeProcess) -> None:
    row = _make(node, "kv", label="revoke me")

    async def run() -> int | None:
        session, ws = await _session(node, "kv", row["token"])
        async with session:
            await _sync(ws)
            revoked = await asyncio.to_thread(node.client.revoke_token, row["id"])
            assert revoked["state"] == "revoked"
            return await _until_closed(ws)

    assert asyncio.run(run()) == ACCESS_ENDED_CLOSE
    assert _refusal(node, "kv", row["token"]) == (401, "token_revoked")


def test_the_admin_token_still_opens_and_creates_anything(node: NodeProcess) -> None:
    async def run() -> None:
        for doc, header in (("admin-made", False), ("kv", True)):
            session, ws = await _session(node, doc, node.token, header=header)
            async with session:
                await _sync(ws)
                await ws.send_bytes(sync_message(YSyncMessageType.SYNC_UPDATE, _update("by-admin")))
                await ws.close()

    asyncio.run(run())
    eventually(lambda: node.client.get("kv", "by-admin")["found"], WAIT_S, "the admin write")


def test_the_list_shows_grants_and_never_secrets(node: NodeProcess) -> None:
    row = _make(node, "kv", "docs-*", read_only=True, label="viewer")
    listed = {r["id"]: r for r in node.client.tokens()}[row["id"]]
    assert listed["docs"] == ["kv", "docs-*"] and listed["read_only"] is True
    assert listed["label"] == "viewer" and listed["state"] == "active"
    text = json.dumps(node.client.tokens())
    assert row["token"][17:] not in text and "sha256" not in text


def _line(lines: queue.Queue[str]) -> dict[str, Any]:
    try:
        line = lines.get(timeout=WAIT_S)
    except queue.Empty:
        raise AssertionError(f"the JS client printed nothing for {WAIT_S} s") from None
    assert line, "the JS client ended early"
    return dict(json.loads(line))


def _reader(proc: subprocess.Popen[str]) -> queue.Queue[str]:
    """The client's stdout lines ('' at its end), read by a thread so waits are bounded."""
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put("")

    threading.Thread(target=pump, daemon=True).start()
    return lines


def _js(js_dir: Path, node: NodeProcess, script: str, doc: str, token: str) -> Any:
    ws = node.api.replace("http://", "ws://") + "/yjs"
    return subprocess.Popen(
        ["node", str(js_dir / script), ws, doc, token],
        cwd=js_dir,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def _end(proc: subprocess.Popen[str], lines: queue.Queue[str]) -> None:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.close()
    proc.wait(timeout=WAIT_S)
    # Let the reader thread reach the end of the output before closing it.
    deadline = time.monotonic() + WAIT_S
    while lines.get(timeout=WAIT_S) != "" and time.monotonic() < deadline:
        pass
    proc.stdout.close()


def test_the_npm_client_writes_with_a_scoped_token(node: NodeProcess, js_client: Path) -> None:
    token = _make(node, "js-*", create=True)["token"]
    proc = _js(js_client.parent, node, "client.mjs", "js-rw", token)
    lines = _reader(proc)
    try:
        assert _line(lines)["event"] == "synced"
        eventually(
            lambda: node.client.get("js-rw", "from-js")["found"], WAIT_S, "the JS write landing"
        )
    finally:
        _end(proc, lines)


def test_the_npm_client_reads_live_with_a_read_only_token(
    node: NodeProcess, js_client: Path
) -> None:
    token = _make(node, "kv", read_only=True)["token"]
    proc = _js(js_client.parent, node, "viewer.mjs", "kv", token)
    lines = _reader(proc)
    try:
        synced = _line(lines)
        assert synced["event"] == "synced" and bytes(synced["root"]["greeting"]) == b"hello"
        node.client.put("kv", "live", b"\x01")
        assert _line(lines) == {"event": "seen", "key": "live", "value": [1]}
        assert proc.stdin is not None
        proc.stdin.write("write js-ro\n")
        proc.stdin.flush()
        assert _line(lines) == {"event": "closed", "code": READ_ONLY_CLOSE}
        assert node.client.get("kv", "js-ro")["found"] is False
    finally:
        _end(proc, lines)
