"""Fixtures for sync tests: a cluster CA, node certificates, nodes on 127.0.0.1."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from edgestate.store import Durability, Set, Store, StoreConfig
from edgestate.sync import Channel, frames, memory_channel_pair, tls
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


_markers = itertools.count()


async def settled(group: list[Node], seconds: float = 10.0) -> None:
    """Return once everything each node had sent by now has reached the others.

    Each node commits a marker to a document of its own and this waits for every
    marker everywhere: a node's pump queues its commits to each peer in commit
    order and a link delivers in order, so whatever a node was about to send
    (an echo, a relay) went out ahead of its marker. The positive signal to wait
    for before asserting that something did not happen.
    """
    docs = []
    for node in group:
        doc = f"settled-{next(_markers)}"
        node.store.create_document(doc)
        node.store.batch([Set(doc, "m", b"1")])
        docs.append(doc)
    await eventually(lambda: all(n.store.has_document(d) for n in group for d in docs), seconds)


async def exchanged(node: Node, peer: Node, seconds: float = 10.0) -> None:
    """Run one anti-entropy exchange from ``node`` with ``peer`` and wait until both
    sides have answered the other's state vectors."""

    def last_sync(of: Node, other: Node) -> float:
        (status,) = [p for p in of.daemon.peers() if p.node_id == other.daemon.node_id]
        return status.last_sync or 0.0

    before = (last_sync(node, peer), last_sync(peer, node))
    await node.daemon.anti_entropy_now()
    await eventually(
        lambda: last_sync(node, peer) > before[0] and last_sync(peer, node) > before[1],
        seconds,
    )


class PassThrough:
    """A ``Channel`` over another that passes everything through; tests override
    ``sent`` to watch (or act on) each frame this side sends."""

    def __init__(self, inner: Channel) -> None:
        self._inner = inner

    @property
    def closed(self) -> bool:
        return self._inner.closed

    @property
    def close_code(self) -> int | None:
        return self._inner.close_code

    @property
    def close_reason(self) -> str | None:
        return self._inner.close_reason

    async def send(self, data: bytes) -> None:
        frame = frames.decode(data, max_bytes=1 << 30, max_docs=1 << 20)
        await self._inner.send(data)
        await self.sent(frame)

    async def sent(self, frame: frames.Frame) -> None:
        """Called with each frame once it is sent."""

    async def receive(self) -> bytes:
        return await self._inner.receive()

    async def close(self, code: int, reason: str) -> None:
        await self._inner.close(code, reason)


class WireLog(PassThrough):
    """Counts the update items of each document in the push frames it sends."""

    def __init__(self, inner: Channel, pushed: collections.Counter[str]) -> None:
        super().__init__(inner)
        self.pushed = pushed

    async def sent(self, frame: frames.Frame) -> None:
        if isinstance(frame, frames.Push):
            self.pushed.update(doc for doc, _ in frame.updates)


def memory_link(
    dialer: Node, listener: Node, pushed: collections.Counter[str] | None = None
) -> tuple[asyncio.Task[bool], asyncio.Task[bool]]:
    """Connect two running daemons over a fresh in-memory channel pair (``dialer``
    dialed); with ``pushed``, count the push items both ends send. The tasks end
    when either daemon closes."""
    ours: Channel
    theirs: Channel
    ours, theirs = memory_channel_pair()
    if pushed is not None:
        ours, theirs = WireLog(ours, pushed), WireLog(theirs, pushed)
    return (
        asyncio.ensure_future(dialer.daemon.run_channel(ours, True)),
        asyncio.ensure_future(listener.daemon.run_channel(theirs, False)),
    )


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
