"""Fixtures for sync tests: a cluster CA, node certificates, nodes on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from edgestate.store import Durability, Store, StoreConfig
from edgestate.sync import tls
from edgestate.sync.config import SyncConfig
from edgestate.sync.daemon import SyncDaemon

_names = itertools.count()


@dataclass
class Cluster:
    """A CA directory and a place to issue node material into."""

    ca_dir: Path
    root: Path

    def issue(self, name: str | None = None) -> tuple[str, Path]:
        name = name or f"node{next(_names)}"
        out = self.root / name
        tls.issue_node(self.ca_dir, name, out)
        return name, out


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Cluster:
    root = tmp_path_factory.mktemp("cluster")
    tls.init_cluster(root / "ca")
    return Cluster(root / "ca", root)


@dataclass
class Node:
    """A store plus its running sync daemon."""

    name: str
    path: Path
    store: Store
    daemon: SyncDaemon

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.daemon.port}"


# Tests do not need power-loss durability, and fsync per commit would make the
# suite slow on a small disk; the sync logic is the same either way.
FAST_STORE = StoreConfig(durability=Durability.BATCHED)


class Nodes:
    """Starts nodes and stops every one of them at the end of the test."""

    def __init__(self, cluster: Cluster, tmp: Path) -> None:
        self.cluster = cluster
        self.tmp = tmp
        self.running: list[Node] = []

    async def start(
        self,
        peers: list[Node] | tuple[str, ...] = (),
        *,
        name: str | None = None,
        certs: Path | None = None,
        path: Path | None = None,
        store_config: StoreConfig = FAST_STORE,
        **overrides: object,
    ) -> Node:
        """Start a node; ``name`` and ``certs`` reuse material issued earlier."""
        if certs is None:
            name, certs = self.cluster.issue(name)
        assert name is not None
        static = tuple(p.address if isinstance(p, Node) else p for p in peers)
        config = SyncConfig(
            port=0,
            tls=tls.files_for(certs, name),
            static_peers=static,
            mdns=False,
            anti_entropy_s=3600.0,  # tests trigger anti-entropy explicitly
            backoff_initial_s=0.02,
            backoff_max_s=0.5,
        )
        config = replace(config, **overrides)  # type: ignore[arg-type]
        store = Store.open(path or self.tmp / f"{name}-data", store_config)
        daemon = SyncDaemon(store, config)
        await daemon.start()
        node = Node(name, path or self.tmp / f"{name}-data", store, daemon)
        self.running.append(node)
        return node

    async def stop(self, node: Node) -> None:
        await node.daemon.close()
        node.store.close()
        self.running.remove(node)

    async def close(self) -> None:
        for node in list(self.running):
            await self.stop(node)


@pytest.fixture
async def nodes(cluster: Cluster, tmp_path: Path) -> AsyncIterator[Nodes]:
    ns = Nodes(cluster, tmp_path)
    try:
        yield ns
    finally:
        await ns.close()


async def eventually(check: Callable[[], bool], seconds: float = 10.0) -> None:
    """Wait until ``check()`` holds; convergence has no single event to wait on."""
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.005)


@contextlib.asynccontextmanager
async def within(seconds: float) -> AsyncIterator[None]:
    async with asyncio.timeout(seconds):
        yield


class RawPeer:
    """A hand-driven peer with a real certificate: speaks frames the test chooses."""

    def __init__(self, cluster: Cluster, name: str | None = None) -> None:
        import aiohttp

        self.name, certs = cluster.issue(name)
        self.files = tls.files_for(certs, self.name)
        self.identity = tls.load_identity(self.files)
        self._aiohttp = aiohttp
        self.session: aiohttp.ClientSession | None = None
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.raw_received: list[bytes] = []

    async def connect(self, node: Node, *, hello: bool = True) -> None:
        from edgestate.sync import frames

        self.session = self._aiohttp.ClientSession()
        self.ws = await self.session.ws_connect(
            f"wss://{node.address}/sync", ssl=tls.client_context(self.files)
        )
        if hello:
            await self.send(
                frames.Hello(
                    frames.PROTOCOL_VERSIONS, self.identity.node_id, self.identity.cluster_id
                )
            )

    async def send(self, frame: object) -> None:
        from edgestate.sync import frames

        assert self.ws is not None
        await self.ws.send_bytes(frames.encode(frame))  # type: ignore[arg-type]

    async def send_raw(self, data: bytes) -> None:
        assert self.ws is not None
        await self.ws.send_bytes(data)

    async def recv(self) -> object:
        """The next frame, decoded; the raw bytes are kept in ``raw_received``."""
        from edgestate.sync import frames

        assert self.ws is not None
        msg = await self.ws.receive()
        assert msg.type == self._aiohttp.WSMsgType.BINARY, msg
        self.raw_received.append(msg.data)
        return frames.decode(msg.data, max_bytes=1 << 30, max_docs=1 << 20)

    async def wait_closed(self) -> tuple[int | None, str]:
        """Read until the node closes us; return its close code and reason."""
        assert self.ws is not None
        while True:
            msg = await self.ws.receive()
            if msg.type in (
                self._aiohttp.WSMsgType.CLOSE,
                self._aiohttp.WSMsgType.CLOSING,
                self._aiohttp.WSMsgType.CLOSED,
            ):
                return self.ws.close_code, str(msg.extra or "")

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self.session is not None:
            await self.session.close()
