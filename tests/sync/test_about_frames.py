"""Version-5 ``about`` frames and what the doctor reads of each peer, on real TLS daemons.

``about`` carries the sender's wall clock and replica id: the receiver keeps the
clock offset and which member the peer is. The peer table also keeps each peer's
last state vectors and the expiry of the certificate it presented.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import msgpack
import pytest

from edgestate.runtime import TrustPolicy
from edgestate.store import Set
from edgestate.sync import frames
from edgestate.sync.frames import About, Hello, StateVectors
from edgestate.sync.tls import file_not_after
from tests.sync.conftest import Cluster, Node, Nodes, RawPeer, eventually
from tests.sync.test_frames import validate_wire


def decode(data: bytes) -> frames.Frame:
    return frames.decode(data, max_bytes=1 << 20, max_docs=1000)


def test_about_round_trips_and_matches_the_schema() -> None:
    frame = About(1796162118.35, (1 << 53) - 1)
    data = frames.encode(frame)
    assert decode(data) == frame
    validate_wire(data)


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"t": "about", "now": 5, "replica": 1}, "about.now"),
        ({"t": "about", "now": math.nan, "replica": 1}, "about.now"),
        ({"t": "about", "now": math.inf, "replica": 1}, "about.now"),
        ({"t": "about", "now": -1.0, "replica": 1}, "about.now"),
        ({"t": "about", "now": 1.0, "replica": -1}, "about.replica"),
        ({"t": "about", "now": 1.0, "replica": 1 << 53}, "about.replica"),
        ({"t": "about", "now": 1.0, "replica": "1"}, "about.replica"),
        ({"t": "about", "now": 1.0}, "missing fields ['replica']"),
        ({"t": "about", "now": 1.0, "replica": 1, "tz": "UTC"}, "unexpected fields ['tz']"),
    ],
)
def test_malformed_about_frames_are_refused_by_name(body: dict[str, object], needle: str) -> None:
    with pytest.raises(frames.MalformedFrameError) as info:
        decode(msgpack.packb(body))
    assert needle in str(info.value)


def view_of(node: Node, node_id: str) -> object:
    return next((v for v in node.daemon.peer_views() if v.node_id == node_id), None)


@pytest.mark.timeout(60)
async def test_peers_tell_their_clock_replica_and_certificate(
    nodes: Nodes, cluster: Cluster
) -> None:
    a = await nodes.start()
    b = await nodes.start([a])
    await a.daemon.wait_connected(1)
    await eventually(
        lambda: (v := view_of(a, b.daemon.node_id)) is not None and v.replica is not None
    )
    view = view_of(a, b.daemon.node_id)
    assert view is not None
    assert view.replica == b.store.replica_id
    # Same machine, same clock: the offset is the transit time, far under a second
    # unless the machine is badly overloaded (then the doctor would say so too).
    assert view.clock_offset_s is not None and abs(view.clock_offset_s) < 30
    # The certificate b presented in the handshake, as its file says.
    assert b.daemon.config.tls is not None
    assert view.cert_not_after == file_not_after(b.daemon.config.tls.cert)

    # b's state vectors are kept after an exchange: a write on a that b has not
    # seen yet shows as what b lacks, once compared.
    a.store.create_document("orders")
    a.store.batch([Set("orders", "o-1", b"x")])
    fresh = await a.daemon.refresh_peer_vectors(10.0)
    assert fresh == [b.daemon.node_id]
    view = view_of(a, b.daemon.node_id)
    assert view is not None and view.connected and view.last_sync is not None


@pytest.mark.timeout(60)
async def test_a_version_4_peer_sending_about_is_refused(nodes: Nodes, cluster: Cluster) -> None:
    a = await nodes.start()
    old = RawPeer(cluster)
    try:
        await old.connect(a, hello=False)
        await old.send(Hello((1, 2, 3, 4), old.identity.node_id, old.identity.cluster_id))
        await old.send(StateVectors({}, reply=False))
        await old.send(About(time.time(), 7))
        code, reason = await old.wait_closed()
        assert code == 1002 and "about frame in protocol version 4" in reason, reason
    finally:
        await old.close()


@pytest.mark.timeout(60)
async def test_a_skewed_peer_clock_is_a_doctor_finding(
    nodes: Nodes, cluster: Cluster, tmp_path: Path
) -> None:
    from edgestate.node.diagnostics import Subject, gather

    a = await nodes.start()
    skewed = RawPeer(cluster)
    try:
        await skewed.connect(a)
        await skewed.send(StateVectors({}, reply=False))
        # An hour ahead: certificates issued on one node look not yet valid on the other.
        await skewed.send(About(time.time() + 3600.0, 4242))
        node_id = skewed.identity.node_id
        await eventually(lambda: getattr(view_of(a, node_id), "replica", None) == 4242)
        subject = Subject(
            a.store,
            a.daemon,
            a.daemon.config,
            tmp_path,
            TrustPolicy([]),
            tmp_path / "trust-policy.json",
            [],
        )
        facts = await gather(subject, refresh_s=0.5)
        json.dumps(facts)  # JSON-ready as the route serves it
        clocks = [f for f in facts["findings"] if f["check"] == "clock"]
        assert [f["severity"] for f in clocks] == ["problem"], clocks
        assert "3600" in clocks[0]["what"] or "3599" in clocks[0]["what"], clocks
        assert "ahead of" in clocks[0]["what"] and "NTP" in clocks[0]["fix"]
        # TLS is on: this node's certificate (valid for a year) is ok, with its cluster.
        tls_ok = [f for f in facts["findings"] if f["check"] == "tls"]
        assert [f["severity"] for f in tls_ok] == ["ok"], tls_ok
        assert a.daemon.cluster_id[:16] in tls_ok[0]["what"]
        peer = next(p for p in facts["peers"] if p["node_id"] == node_id)
        assert peer["replica"] == 4242 and peer["cert_not_after"] is not None
    finally:
        await skewed.close()


@pytest.mark.timeout(60)
async def test_a_dialed_peer_of_another_cluster_is_named_with_the_fix(tmp_path: Path) -> None:
    from edgestate.node.diagnostics import Subject, gather
    from edgestate.store import Durability, Store, StoreConfig
    from edgestate.sync import SyncConfig, SyncDaemon

    config = StoreConfig(durability=Durability.BATCHED)
    stores = [Store.open(tmp_path / name, config) for name in ("ours", "theirs")]
    theirs = SyncDaemon(stores[1], SyncConfig(port=0, insecure=True, mdns=False, cluster_id="x"))
    ours: SyncDaemon | None = None
    try:
        await theirs.start()
        address = f"127.0.0.1:{theirs.port}"
        ours = SyncDaemon(
            stores[0],
            SyncConfig(
                port=0,
                insecure=True,
                mdns=False,
                cluster_id="ours",
                static_peers=(address,),
                backoff_initial_s=0.05,
            ),
        )
        await ours.start()
        daemon = ours

        def refused() -> bool:
            view = next((v for v in daemon.peer_views() if v.address == address), None)
            return view is not None and (view.last_error or "").startswith("refused")

        await eventually(refused)
        subject = Subject(
            stores[0],
            daemon,
            daemon.config,
            tmp_path,
            TrustPolicy([]),
            tmp_path / "trust-policy.json",
            [],
        )
        facts = await gather(subject, refresh_s=0.1)
        down = [f for f in facts["findings"] if f["check"] == "peers"]
        assert [f["severity"] for f in down] == ["problem"], down
        assert "cluster x, not ours" in down[0]["what"], down
        assert "belongs to another cluster" in down[0]["fix"], down
    finally:
        if ours is not None:
            await ours.close()
        await theirs.close()
        for store in stores:
            store.close()
