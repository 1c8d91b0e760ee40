"""Mutual TLS with a cluster CA, over real TLS sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import shutil
import ssl
from pathlib import Path

import aiohttp
import pytest

from edgestate.errors import ClusterCAError, ConfigError
from edgestate.sync import frames, tls
from edgestate.sync.config import SyncConfig
from edgestate.sync.peers import PeerState
from tests.sync.conftest import Cluster, Nodes, RawPeer, eventually

pytestmark = pytest.mark.timeout(30)


def test_node_id_is_the_certificate_fingerprint(cluster: Cluster) -> None:
    name, out = cluster.issue()
    files = tls.files_for(out, name)
    identity = tls.load_identity(files)
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    der = x509.load_pem_x509_certificate(files.cert.read_bytes()).public_bytes(Encoding.DER)
    assert identity.node_id == tls.fingerprint(der)
    ca_der = x509.load_pem_x509_certificate(files.ca_cert.read_bytes()).public_bytes(Encoding.DER)
    assert identity.cluster_id == tls.fingerprint(ca_der)
    assert (out / f"{name}.key").stat().st_mode & 0o077 == 0  # private key not world-readable


def test_init_refuses_to_overwrite_a_ca(cluster: Cluster) -> None:
    with pytest.raises(ClusterCAError, match="refusing to overwrite"):
        tls.init_cluster(cluster.ca_dir)


def test_sync_without_tls_requires_the_explicit_insecure_flag() -> None:
    with pytest.raises(ConfigError, match="insecure=True"):
        SyncConfig()


async def test_nodes_of_one_cluster_connect_and_see_each_other(nodes: Nodes) -> None:
    a = await nodes.start()
    b = await nodes.start([a])
    async with asyncio.timeout(10):
        await a.daemon.wait_connected(1)
        await b.daemon.wait_connected(1)
    assert a.daemon.connected() == [b.daemon.node_id]
    (status,) = b.daemon.peers()
    assert status.state is PeerState.CONNECTED and status.node_id == a.daemon.node_id


async def test_a_node_of_another_cluster_is_refused_and_logged(
    nodes: Nodes, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    other = Cluster(tmp_path / "other-ca", tmp_path)
    tls.init_cluster(other.ca_dir)
    caplog.set_level(logging.WARNING, logger="edgestate.sync")
    a = await nodes.start()
    name, certs = other.issue()
    stranger = await nodes.start([a], name=name, certs=certs)
    a.daemon.add_peer(stranger.address)  # both dial: each refuses the other's CA
    await eventually(lambda: a.daemon.stats.refused >= 1 and stranger.daemon.stats.refused >= 1)
    assert a.daemon.connected() == [] and stranger.daemon.connected() == []
    assert "refused sync peer" in caplog.text
    for node in (a, stranger):
        (status,) = node.daemon.peers()
        assert status.state is not PeerState.CONNECTED
        assert status.last_error is not None and "certificate verify failed" in status.last_error


async def _dial_with(ctx: ssl.SSLContext, address: str) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(f"wss://{address}/sync", ssl=ctx) as ws:
            await ws.receive()


async def test_a_client_without_a_certificate_is_refused(
    nodes: Nodes, cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    a = await nodes.start()
    ctx = ssl.create_default_context(cafile=str(cluster.ca_dir / tls.CA_CERT))
    ctx.check_hostname = False
    caplog.set_level(logging.WARNING, logger="edgestate.sync")
    with pytest.raises((aiohttp.ClientError, ConnectionError)):
        await _dial_with(ctx, a.address)
    await eventually(lambda: a.daemon.stats.refused >= 1)
    assert "certificate" in caplog.text


async def test_an_expired_certificate_is_refused(nodes: Nodes, cluster: Cluster) -> None:
    a = await nodes.start()
    out = cluster.root / "expired"
    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=30)
    tls.issue_node(cluster.ca_dir, "expired", out, days=1, not_before=past)
    ctx = tls.client_context(tls.files_for(out, "expired"))
    with pytest.raises((aiohttp.ClientError, ConnectionError)):
        await _dial_with(ctx, a.address)
    await eventually(lambda: a.daemon.stats.refused >= 1)


async def test_a_revoked_certificate_is_refused(
    nodes: Nodes, cluster: Cluster, tmp_path: Path
) -> None:
    # A private CA copy, so revoking does not touch the session's cluster.
    private = Cluster(tmp_path / "ca", tmp_path)
    shutil.copytree(cluster.ca_dir, private.ca_dir)
    nodes.cluster = private
    victim_name, victim_dir = private.issue("victim")
    tls.revoke(private.ca_dir, victim_dir / "victim.pem")
    a = await nodes.start()  # issued after the revocation: its crl.pem lists the victim
    with pytest.raises((aiohttp.ClientError, ConnectionError)):
        await _dial_with(tls.client_context(tls.files_for(victim_dir, victim_name)), a.address)
    await eventually(lambda: a.daemon.stats.refused >= 1)


async def test_a_hello_that_lies_about_the_node_id_is_refused(
    nodes: Nodes, cluster: Cluster
) -> None:
    a = await nodes.start()
    peer = RawPeer(cluster)
    try:
        await peer.connect(a, hello=False)
        await peer.send(frames.Hello((1,), "f" * 64, peer.identity.cluster_id))
        code, reason = await peer.wait_closed()
    finally:
        await peer.close()
    assert code == aiohttp.WSCloseCode.POLICY_VIOLATION
    assert "fingerprint" in reason
    assert a.daemon.stats.refused == 1


def test_only_the_cluster_ca_is_trusted_on_either_side(cluster: Cluster) -> None:
    # create_default_context would also trust the system's public roots: any server
    # with, say, a web PKI certificate would then pass as a peer when we dial it.
    name, out = cluster.issue()
    files = tls.files_for(out, name)
    no_crl = tls.TLSFiles(ca_cert=files.ca_cert, cert=files.cert, key=files.key)
    for ctx in (tls.client_context(no_crl), tls.server_context(no_crl)):
        assert ctx.cert_store_stats()["x509_ca"] == 1
        assert ctx.verify_mode == ssl.CERT_REQUIRED
