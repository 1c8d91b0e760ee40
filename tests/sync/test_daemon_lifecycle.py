"""Lifecycle and embedding: nothing runs after close(); routes mount in a host app;
a Yjs client's writes reach peer nodes."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiohttp import web

from edgestate.store import Set, Store
from edgestate.sync import tls
from edgestate.sync.config import SyncConfig
from edgestate.sync.daemon import SyncDaemon
from tests.sync.conftest import FAST_STORE, Cluster, Nodes, eventually

pytestmark = pytest.mark.timeout(30)


async def test_nothing_of_the_daemon_runs_after_close(nodes: Nodes) -> None:
    before = asyncio.all_tasks()
    a = await nodes.start()
    b = await nodes.start([a])
    await b.daemon.wait_connected(1)
    b.daemon.add_peer("127.0.0.1:1")  # a dialer stuck in backoff must stop too
    await nodes.close()
    await asyncio.sleep(0)  # let aiohttp's own connection callbacks finish
    assert asyncio.all_tasks() - before == set()


async def test_a_node_with_no_config_listens_on_loopback_only() -> None:
    config = SyncConfig(insecure=True)
    assert config.host == "127.0.0.1" and config.static_peers == ()


async def test_insecure_mode_says_so_loudly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = Store.open(tmp_path / "d", FAST_STORE)
    try:
        async with SyncDaemon(store, SyncConfig(insecure=True, port=0, mdns=False)):
            pass
    finally:
        store.close()
    assert "INSECURE MODE" in caplog.text


async def test_routes_mount_into_a_host_application(
    nodes: Nodes, cluster: Cluster, tmp_path: Path
) -> None:
    a = await nodes.start()
    name, certs = cluster.issue()
    store = Store.open(tmp_path / "host-data", FAST_STORE)
    config = SyncConfig(port=0, tls=tls.files_for(certs, name), mdns=False)
    daemon = SyncDaemon(store, config, serve=False)
    await daemon.start()
    app = web.Application()
    app.add_routes(daemon.routes())
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=daemon.server_ssl_context())
    await site.start()
    try:
        a.daemon.add_peer(f"127.0.0.1:{runner.addresses[0][1]}")
        async with asyncio.timeout(10):
            await daemon.wait_connected(1)
        a.store.create_document("docs")
        await a.store.abatch([Set("docs", "k", b"via host app")])
        await eventually(lambda: store.has_document("docs") and store.get("docs", "k") is not None)
    finally:
        await daemon.close()
        await runner.cleanup()
        store.close()


def test_the_public_surface_is_what_we_mean_to_export() -> None:
    import edgestate.sync

    assert sorted(edgestate.sync.__all__) == [
        "Channel",
        "Limits",
        "PeerState",
        "PeerStatus",
        "PeerView",
        "SyncConfig",
        "SyncDaemon",
        "SyncStats",
        "TLSFiles",
        "YjsEndpoint",
        "memory_channel_pair",
        "missing",
    ]
