"""api.tls with invocation workers: each worker terminates TLS itself with the
cluster certificate, and a cluster client certificate is still admin through
a worker's relay, which no client can fake with a header."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import socket
import ssl
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import pytest
import tomli_w
from pycrdt import YSyncMessageType

from edgestate.client import NodeAPIError, NodeClient, tls_context
from edgestate.devkit import example_bundle, make_publisher
from edgestate.node.api.certified import CERT_HEADER, VERIFIED
from edgestate.sync import tls
from edgestate.sync.yjs import sync_message
from tests.node.conftest import NodeProcess, start_node
from tests.node.test_modules_e2e import BUILD
from tests.sync.yjs_app import one_key_update, until_key

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp_path = tmp_path_factory.mktemp("cluster")
    tls.init_cluster(tmp_path / "ca")
    for name in ("node", "operator"):
        tls.issue_node(tmp_path / "ca", name, tmp_path / name)
    return tmp_path


@pytest.fixture(scope="module")  # one node: each test only reads
def node(cluster: Path) -> Iterator[NodeProcess]:
    files = tls.files_for(cluster / "node", "node")
    publisher = make_publisher(cluster / "publisher")
    data = cluster / "data"
    data.mkdir()
    (data / "trust-policy.json").write_bytes(publisher.policy_path.read_bytes())
    config = cluster / "node.toml"
    sync = {"ca_cert": str(files.ca_cert), "cert": str(files.cert), "key": str(files.key)}
    config.write_text(tomli_w.dumps({"api": {"tls": True, "workers": 2}, "sync": sync}))
    n = start_node(data, "--no-mdns", config=config)
    try:
        bundle = example_bundle("kv_echo", publisher, BUILD)
        operator = tls.files_for(cluster / "operator", "operator")
        admin = NodeClient(
            n.api, None, ssl_context=tls_context(ca(cluster), str(operator.cert), str(operator.key))
        )
        # Admin by certificate alone: relayed by a worker that verified it.
        admin.deploy(bundle.wasm, bundle.manifest, bundle.signature)
        yield n
    finally:
        n.stop()


def ca(cluster: Path) -> str:
    return str(cluster / "node" / "ca.pem")


def https_post(api: str, context: ssl.SSLContext, path: str, body: bytes) -> tuple[int, bytes, str]:
    url = urlsplit(api)
    conn = http.client.HTTPSConnection(url.hostname, url.port, timeout=30, context=context)
    try:
        conn.request("POST", path, body)
        resp = conn.getresponse()
        return resp.status, resp.read(), resp.getheader("X-Edgestate-Worker", "?")
    finally:
        conn.close()


def test_workers_answer_invocations_over_https_with_the_cluster_certificate(
    node: NodeProcess, cluster: Path
) -> None:
    assert node.api.startswith("https://")
    context = tls_context(ca(cluster), None, None)  # verifies the node's certificate
    assert context.verify_mode == ssl.CERT_REQUIRED
    seen: set[str] = set()
    for n in range(200):  # fresh connections: the kernel spreads them over both
        status, out, worker = https_post(
            node.api, context, "/v1/invoke/kv-echo", f"k{n}={n}".encode()
        )
        assert (status, out) == (200, str(n).encode())
        seen.add(worker)
        if seen == {"0", "1"}:
            break
    assert seen == {"0", "1"}
    # A client that does not trust the cluster CA refuses the node.
    with pytest.raises(ssl.SSLCertVerificationError):
        https_post(node.api, ssl.create_default_context(), "/v1/invoke/kv-echo", b"k=v")


def test_a_client_cannot_claim_a_verified_certificate_with_a_header(
    node: NodeProcess, cluster: Path
) -> None:
    url = urlsplit(node.api)
    conn = http.client.HTTPSConnection(
        url.hostname, url.port, timeout=30, context=tls_context(ca(cluster), None, None)
    )
    try:
        conn.request("GET", "/v1/admin/status", headers={CERT_HEADER: VERIFIED})
        resp = conn.getresponse()
        assert resp.status == 401, resp.read()
    finally:
        conn.close()
    with pytest.raises(NodeAPIError) as refused:
        NodeClient(node.api, None, ssl_context=tls_context(ca(cluster), None, None)).status()
    assert refused.value.status == 401
    assert NodeClient(
        node.api, node.token, ssl_context=tls_context(ca(cluster), None, None)
    ).status()["ready"]


@contextlib.asynccontextmanager
async def tls_session() -> AsyncIterator[aiohttp.ClientSession]:
    """A client session whose sockets are all closed once it exits.

    An SSL transport closes in the background (its close_notify); one still open
    when the test's event loop ends is an unclosed-socket ResourceWarning, which
    fails the run (seen once in ten runs). So wait, bounded, until each socket
    this session made is closed."""
    sockets: list[socket.socket] = []

    def made(addr: tuple[int, int, int, str, tuple[str, int]]) -> socket.socket:
        sock = socket.socket(family=addr[0], type=addr[1], proto=addr[2])
        sockets.append(sock)
        return sock

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(socket_factory=made)) as s:
        yield s
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while any(sock.fileno() != -1 for sock in sockets):
        assert loop.time() < deadline, "a client socket was never closed"
        await asyncio.sleep(0.01)


async def test_yjs_over_wss_through_a_worker_is_relayed_not_handed_off(
    node: NodeProcess, cluster: Path
) -> None:
    """A worker holds the TLS session of a wss:// client: the node could not read
    the bare socket, so the worker relays (and the client syncs as usual)."""
    context = tls_context(ca(cluster), None, None)
    url = node.api.replace("https://", "wss://") + "/yjs/over-tls"
    async with tls_session() as session:
        writer = await session.ws_connect(url, params={"token": node.token}, ssl=context)
        reader = await session.ws_connect(url, params={"token": node.token}, ssl=context)
        await writer.send_bytes(sync_message(YSyncMessageType.SYNC_UPDATE, one_key_update("k")))
        await until_key(reader, "k")
        await writer.close()
        await reader.close()


async def test_yjs_over_wss_with_a_cluster_certificate_needs_no_token_through_a_worker(
    node: NodeProcess, cluster: Path
) -> None:
    """The worker verified the client's certificate: the relayed handshake says so,
    as for any other relayed request (it did not, and the node asked for a token)."""
    operator = tls.files_for(cluster / "operator", "operator")
    certified = tls_context(ca(cluster), str(operator.cert), str(operator.key))
    url = node.api.replace("https://", "wss://") + "/yjs/by-certificate"
    async with tls_session() as session:
        ws = await session.ws_connect(url, ssl=certified)
        async with asyncio.timeout(30):
            first = await ws.receive()
        assert first.type == aiohttp.WSMsgType.BINARY, first
        assert first.data[:2] == bytes([0, YSyncMessageType.SYNC_STEP1])
        await ws.close()
        # Without the certificate, and without a token, the node refuses it.
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(url, ssl=tls_context(ca(cluster), None, None))
        assert refused.value.status == 401
