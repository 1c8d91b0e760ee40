"""The bounded mesh on real daemons: each with its own LMDB store, real sockets on
127.0.0.1, few links each. Writes made anywhere reach everyone through relays;
dropped links heal; a restarted node rejoins; garbage-collection frontiers count
members this node has no link to."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from edgestate.errors import ConfigError
from edgestate.store import Set, Store
from edgestate.sync import SyncConfig, SyncDaemon, frames, memory_channel_pair, topology
from edgestate.sync.discovery import Found
from edgestate.sync.peers import PeerState
from tests.sync.conftest import FAST_STORE, PassThrough, eventually

pytestmark = pytest.mark.timeout(60)

DOC = "shared"
COUNT = 9
MAX_PEERS = 3


class Directory:
    """What mDNS gives on a LAN, on loopback: every node learns every other's address
    and node id. One ``Source`` per daemon; ``publish`` once its port is bound."""

    def __init__(self) -> None:
        self.entries: list[Found] = []
        self.sources: list[Directory.Source] = []

    class Source:
        def __init__(self, directory: Directory, me: str) -> None:
            self._directory = directory
            self.me = me
            self.on_found: Callable[[Found], None] | None = None

        async def start(
            self, on_found: Callable[[Found], None], on_lost: Callable[[Found], None]
        ) -> None:
            self.on_found = on_found
            for entry in self._directory.entries:
                if entry.node_id != self.me:
                    on_found(entry)

        async def aclose(self) -> None:
            self.on_found = None

    def source(self, me: str) -> Directory.Source:
        src = Directory.Source(self, me)
        self.sources.append(src)
        return src

    def publish(self, found: Found) -> None:
        self.entries = [e for e in self.entries if e.node_id != found.node_id] + [found]
        for src in self.sources:
            if src.on_found is not None and src.me != found.node_id:
                src.on_found(found)


@dataclass
class Site:
    tmp: Path
    directory: Directory = field(default_factory=Directory)
    running: dict[str, tuple[Store, SyncDaemon]] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)

    async def start(self, name: str, *, directory: bool = True, **overrides: object) -> SyncDaemon:
        settings: dict[str, object] = dict(
            insecure=True,
            node_id=name,
            port=self.ports.get(name, 0),
            mdns=False,
            max_peers=MAX_PEERS,
            anti_entropy_s=3600.0,
            backoff_initial_s=0.02,
            backoff_max_s=0.3,
        )
        settings.update(overrides)
        store = Store.open(self.tmp / name, FAST_STORE)
        if not store.has_document(DOC):
            store.create_document(DOC)
        daemon = SyncDaemon(
            store,
            SyncConfig(**settings),  # type: ignore[arg-type]
            discovery=[self.directory.source(name)] if directory else [],
        )
        try:
            await daemon.start()
        except BaseException:
            store.close()
            raise
        assert daemon.port is not None
        self.ports[name] = daemon.port
        self.running[name] = (store, daemon)
        if directory:
            self.directory.publish(Found("127.0.0.1", daemon.port, "mdns", name))
        return daemon

    async def stop(self, name: str) -> None:
        store, daemon = self.running.pop(name)
        try:
            await daemon.close()
        finally:
            store.close()

    async def close(self) -> None:
        # All at once: stopped one by one, the rest keep redialing the stopped
        # ones and a dial accepted by a server mid-shutdown can leave its socket
        # to the garbage collector (seen with a full mesh too).
        await asyncio.gather(*(self.stop(name) for name in list(self.running)))

    def daemons(self) -> list[SyncDaemon]:
        return [d for _, d in self.running.values()]

    def links(self) -> dict[str, set[str]]:
        return {d.node_id: set(d.connected()) for d in self.daemons()}


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[Site]:
    s = Site(tmp_path)
    try:
        yield s
    finally:
        await s.close()


async def start_site(site: Site, count: int = COUNT, **overrides: object) -> list[SyncDaemon]:
    daemons = [await site.start(f"n{i}", **overrides) for i in range(count)]
    await eventually(lambda: meshed(site), 20)
    return daemons


def meshed(site: Site) -> bool:
    """Every node linked, the links agreed by both ends, the site one piece."""
    links = site.links()
    return (
        all(links.values())
        and all(me in links.get(peer, set()) for me, peers in links.items() for peer in peers)
        and topology.connected(links)
    )


def keys(store: Store) -> set[str]:
    if not store.has_document(DOC):
        return set()
    return set(dict(store.scan(DOC, limit=10_000).items))


async def until(check: Callable[[], bool], seconds: float = 20.0) -> None:
    await eventually(check, seconds)


async def test_writes_at_every_node_reach_all_over_few_links(site: Site) -> None:
    daemons = await start_site(site)
    links = site.links()
    assert all(len(peers) <= topology.hard_cap(MAX_PEERS) for peers in links.values())
    # Not a full mesh in disguise: some pairs have no link and rely on relays.
    assert sum(len(p) for p in links.values()) < COUNT * (COUNT - 1)
    assert any(len(p) < COUNT - 1 for p in links.values())
    # The nodes not chosen wait in standby, not in backoff.
    states = collections.Counter(p.state for d in daemons for p in d.peers())
    assert states[PeerState.STANDBY] > 0
    expected = set()
    for r in range(5):
        for i, (store, _) in enumerate(site.running.values()):
            await store.abatch([Set(DOC, f"n{i}-{r}", b"v")])
            expected.add(f"n{i}-{r}")
    await until(lambda: all(keys(s) == expected for s, _ in site.running.values()))
    assert not any(d.stats.protocol_errors for d in daemons)


async def test_links_dropped_mid_write_heal(site: Site) -> None:
    daemons = await start_site(site, anti_entropy_s=0.3)
    expected: set[str] = set()
    stores = [s for s, _ in site.running.values()]
    for r in range(40):
        i = r % len(stores)
        await stores[i].abatch([Set(DOC, f"k{r}", b"v")])
        expected.add(f"k{r}")
        if r % 8 == 3:
            # Cut every link of one node while updates to it are queued.
            victim = daemons[(r // 8) % len(daemons)]
            for conn in victim._table.connections():
                await conn.close(1001, "test: link dropped")
    await until(lambda: all(keys(s) == expected for s in stores))
    await until(lambda: meshed(site))


class LosesPushes(PassThrough):
    """A link that loses every push frame it should carry (a relay that never lands)."""

    async def send(self, data: bytes) -> None:
        frame = frames.decode(data, max_bytes=1 << 30, max_docs=1 << 20)
        if not isinstance(frame, frames.Push):
            await super().send(data)


class LosesUpdates(PassThrough):
    """A link that loses every frame carrying updates: pushes and diffs."""

    async def send(self, data: bytes) -> None:
        frame = frames.decode(data, max_bytes=1 << 30, max_docs=1 << 20)
        if not isinstance(frame, frames.Push | frames.Diff | frames.DiffPart):
            await super().send(data)


def link(
    x: SyncDaemon, y: SyncDaemon, *, lossy: bool = False, loses: type[PassThrough] = LosesPushes
) -> list[asyncio.Future[bool]]:
    """``x`` dials ``y`` over an in-memory channel pair; the tasks end when either closes."""
    ours, theirs = memory_channel_pair()
    return [
        asyncio.ensure_future(x.run_channel(loses(ours) if lossy else ours, True)),
        asyncio.ensure_future(y.run_channel(theirs, False)),
    ]


async def test_anti_entropy_takes_every_link_in_turn_and_heals_a_lost_relay(site: Site) -> None:
    """B relays A's writes to C over a link that loses every push: only anti-entropy,
    which visits each of B's links in turn, can bring them to C."""
    a = await site.start("a", directory=False)
    b = await site.start("b", directory=False, anti_entropy_s=0.2)
    c = await site.start("c", directory=False)
    extra = [await site.start(f"x{i}", directory=False) for i in range(3)]
    tasks = link(a, b) + link(b, c, lossy=True)
    for x in extra:
        tasks += link(b, x)
    try:
        await asyncio.wait_for(b.wait_connected(5), 10)
        store_a, store_c = site.running["a"][0], site.running["c"][0]
        before = {p.node_id: p.last_sync or 0.0 for p in b.peers()}
        for r in range(20):
            await store_a.abatch([Set(DOC, f"k{r}", b"v")])
        await until(lambda: len(keys(store_c)) == 20)
        # Every link of B had its exchange, not the same one again and again.
        await until(
            lambda: all((p.last_sync or 0.0) > before.get(p.node_id, 0.0) for p in b.peers())
        )
    finally:
        await site.close()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_a_peer_gone_mid_send_has_its_neighbours_healed_at_once(site: Site) -> None:
    """C's write reaches A, not B (that link loses pushes); A does not relay it to
    B, C's neighbour, which was to get it from C. C's link to A then drops: A asks
    B for a state-vector exchange at once, not at its anti-entropy turn (an hour
    here), and B gets the write."""
    a = await site.start("a", directory=False)
    b = await site.start("b", directory=False)
    c = await site.start("c", directory=False)
    tasks = link(a, b) + link(c, b, lossy=True, loses=LosesUpdates)
    c_to_a = link(c, a)
    try:
        await asyncio.wait_for(a.wait_connected(2), 10)
        await asyncio.wait_for(c.wait_connected(2), 10)
        store_a, store_b, store_c = (site.running[n][0] for n in "abc")
        # A knows C's neighbours before C writes: it will skip B.
        await until(lambda: any(conn.neighbors >= {"a", "b"} for conn in a._table.connections()))
        await store_c.abatch([Set(DOC, "from-c", b"v")])
        await until(lambda: "from-c" in keys(store_a))
        await asyncio.sleep(0.3)  # time enough for a relay, had there been one
        assert "from-c" not in keys(store_b)
        for conn in c._table.connections():
            if conn.node_id == "a":
                await conn.close(1001, "test: c went away")  # as a node shutting down
        await asyncio.gather(*c_to_a, return_exceptions=True)
        await until(lambda: "from-c" in keys(store_b), 10)
    finally:
        await site.close()
        await asyncio.gather(*tasks, *c_to_a, return_exceptions=True)


async def test_a_restarted_node_rejoins_and_catches_up(site: Site) -> None:
    await start_site(site)
    await site.stop("n4")
    stores = [s for s, _ in site.running.values()]
    for r in range(30):
        await stores[r % len(stores)].abatch([Set(DOC, f"while-down-{r}", b"v")])
    await site.start("n4")
    await until(lambda: meshed(site))
    expected = {f"while-down-{r}" for r in range(30)}
    await until(lambda: all(keys(s) == expected for s, _ in site.running.values()))


async def test_gc_frontier_counts_members_not_directly_linked(site: Site) -> None:
    daemons = await start_site(site, gc_round_s=3600.0)
    for i, (store, _) in enumerate(site.running.values()):
        await store.abatch([Set(DOC, f"n{i}", b"v")])
    await until(lambda: all(len(keys(s)) == COUNT for s, _ in site.running.values()))
    replicas = sorted(s.replica_id for s, _ in site.running.values())
    links = site.links()
    far = [
        (d, other)
        for d in daemons
        for other in daemons
        if other is not d and other.node_id not in links[d.node_id]
    ]
    assert far, "every pair linked: nothing to prove"

    async def rounds() -> None:
        for d in daemons:
            await d.gc_round()

    # Reports cross the mesh hop by hop, one hop per round at most.
    for _ in range(2 * COUNT):
        await rounds()
        await asyncio.sleep(0.05)
        if all(d.frontier.members == replicas for d in daemons):
            break
    assert all(d.frontier.members == replicas for d in daemons)


async def test_static_peers_without_ids_still_form_one_mesh(site: Site) -> None:
    """No discovery of node ids (a static list): random links, then rotation."""
    daemons = [await site.start(f"s{i}", directory=False, rotate_s=1.0) for i in range(COUNT)]
    for d in daemons:
        for other in daemons:
            if other is not d:
                d.add_peer(f"127.0.0.1:{other.port}")
    await until(lambda: topology.connected(site.links()), 30)
    assert all(len(p) <= topology.hard_cap(MAX_PEERS) for p in site.links().values())
    await site.running["s0"][0].abatch([Set(DOC, "hello", b"v")])
    await until(lambda: all(keys(s) == {"hello"} for s, _ in site.running.values()))
    # Links rotate, and the site stays one piece through it.
    await until(lambda: sum(d.mesh.rotations for d in daemons if d.mesh is not None) >= COUNT)
    await site.running["s5"][0].abatch([Set(DOC, "after", b"v")])
    await until(lambda: all(keys(s) == {"hello", "after"} for s, _ in site.running.values()))


async def test_a_full_node_refuses_more_inbound_links_by_name(site: Site) -> None:
    hub = await site.start("hub", directory=False, max_peers=2)
    dialers = [await site.start(f"d{i}", directory=False) for i in range(5)]
    for d in dialers:
        d.add_peer(f"127.0.0.1:{hub.port}")

    def refused() -> list[str]:
        return [
            p.last_error or ""
            for d in dialers
            for p in d.peers()
            if (p.last_error or "").startswith("mesh_full")
        ]

    await until(lambda: len(refused()) >= 2 and len(hub.connected()) >= 2)
    # Two inbound links, and the ring predecessor may take one more.
    assert 2 <= len(hub.connected()) <= 3
    assert "sync.max_peers 2" in refused()[0]
    # The hub keeps serving the links it took.
    await site.running["hub"][0].abatch([Set(DOC, "from-hub", b"v")])
    linked = [site.running[d.node_id][0] for d in dialers if d.node_id in hub.connected()]
    await until(lambda: all(keys(s) == {"from-hub"} for s in linked))


async def test_max_peers_zero_is_the_full_mesh(site: Site) -> None:
    await start_site(site, count=5, max_peers=0)
    await until(lambda: all(len(p) == 4 for p in site.links().values()))
    assert all(d.mesh is None for d in site.daemons())


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"max_peers": -1}, "sync.max_peers"),
        ({"max_peers": 5000}, "sync.max_peers"),
        ({"max_peers": 2.5}, "sync.max_peers"),
        ({"max_peers": True}, "sync.max_peers"),
        ({"rotate_s": 0}, "sync.rotate_s"),
        ({"rotate_s": float("nan")}, "sync.rotate_s"),
    ],
)
def test_bad_mesh_settings_are_refused_by_name(overrides: dict[str, object], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        SyncConfig(insecure=True, **overrides)  # type: ignore[arg-type]
