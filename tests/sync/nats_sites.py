"""Sites joined through NATS for tests: nats-server processes and node groups.

A site is three in-process nodes on a LAN (the second and third dial the first
over real WebSockets on 127.0.0.1); its NATS link is configured per node
(every node, or a gateway only). Sites share no LAN link: only NATS joins them.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable
from dataclasses import replace
from pathlib import Path

from edgestate.devkit.nats_server import NatsServer, nats_cluster
from edgestate.store import Store
from edgestate.sync import tls
from edgestate.sync.config import SyncConfig
from edgestate.sync.membership import Membership
from edgestate.sync.nats_config import NatsConfig
from edgestate.sync.nats_link import NatsLink
from tests.sync.conftest import FAST_STORE, Node, Nodes, eventually

NATS_USER, NATS_PASSWORD = "edge", "s3cret-pw"


@contextlib.asynccontextmanager
async def nats_servers(
    nodes: Nodes, directory: Path, *, size: int = 1, advertise: bool = True
) -> AsyncIterator[list[NatsServer]]:
    """``size`` servers with the test user; the nodes stop first on exit, as a
    node leaving while NATS is up does (the fault tests stop servers themselves)."""
    with nats_cluster(
        directory, size=size, user=NATS_USER, password=NATS_PASSWORD, advertise=advertise
    ) as servers:
        try:
            yield servers
        finally:
            await nodes.close()


def nats_config(tmp: Path, urls: Iterable[str], **overrides: object) -> NatsConfig:
    """A link config with the test servers' user and password (a 0600 file)."""
    secret = tmp / "nats-password"
    if not secret.exists():
        secret.write_text(NATS_PASSWORD + "\n")
        secret.chmod(0o600)
    base = NatsConfig(
        servers=tuple(urls),
        user=NATS_USER,
        password_file=secret,
        anti_entropy_s=3600.0,  # rounds run at connect and reconnect; tests ask for more
        answer_window_s=1.0,
    )
    return replace(base, **overrides)  # type: ignore[arg-type]


async def start_site(
    nodes: Nodes,
    tmp: Path,
    urls: list[str],
    *,
    gateway_only: bool = False,
    size: int = 3,
    **nats_overrides: object,
) -> list[Node]:
    """``size`` nodes on one LAN; all on NATS, or (``gateway_only``) the first, as a gateway."""
    site: list[Node] = []
    for i in range(size):
        on_nats = not gateway_only or i == 0
        cfg = nats_config(tmp, urls, gateway=gateway_only, **nats_overrides) if on_nats else None
        node = await nodes.start(site[:1], nats=cfg)
        site.append(node)
    for node in site[1:]:
        await node.daemon.wait_connected(1)
    return site


async def two_sites(nodes: Nodes, tmp: Path, url: str) -> tuple[Node, Node]:
    """Two one-node sites on the NATS server at ``url``, both linked and consuming."""
    (a,) = await start_site(nodes, tmp, [url], size=1)
    (b,) = await start_site(nodes, tmp, [url], size=1)
    await ready([a, b])
    return a, b


async def ready(group: Iterable[Node], seconds: float = 60) -> None:
    """Until every node of ``group`` with a NATS link has it connected and consuming."""
    for node in group:
        if node.daemon.nats is not None:
            await eventually(node.daemon.nats.ready.is_set, seconds)


def value(store: Store, doc: str, key: str) -> bytes | None:
    """``key`` of ``doc``, None while the document is not there yet."""
    return store.get(doc, key) if store.has_document(doc) else None


def counter(store: Store, doc: str, key: str) -> int | None:
    """The counter at ``key`` as an int (None if absent)."""
    raw = value(store, doc, key)
    return None if raw is None else int.from_bytes(raw, "little", signed=True)


@contextlib.asynccontextmanager
async def intruder_link(
    tmp: Path, url: str, cluster_id: str, **nats_settings: object
) -> AsyncIterator[tuple[NatsLink, Store]]:
    """A started NATS link of a node of *another* cluster (its own CA) aiming at
    ``cluster_id``'s subjects with valid NATS credentials, and its store; NATS
    has let it in when this yields."""
    tls.init_cluster(tmp / "intruder-ca")
    tls.issue_node(tmp / "intruder-ca", "intruder", tmp / "intruder")
    files = tls.files_for(tmp / "intruder", "intruder")
    config = SyncConfig(tls=files, nats=nats_config(tmp, [url], **nats_settings))
    store = Store.open(tmp / "intruder-data", FAST_STORE)
    membership = Membership(store, local_only=frozenset(), grace_s=60.0, listeners=list)
    link = NatsLink(
        store,
        config,
        node_id=tls.load_identity(files).node_id,
        cluster_id=cluster_id,
        membership=membership,
    )
    try:
        await link.start()
        await eventually(link.ready.is_set, 30)
        yield link, store
    finally:
        await link.close()
        store.close()
