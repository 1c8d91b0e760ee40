"""Finding peers: a static list, and mDNS (zeroconf) on the listen address's interface.

A ``Discovery`` reports peers through two callbacks and owns whatever it
starts; ``aclose()`` stops all of it. mDNS announces and listens only on the
interface of the node's listen address (127.0.0.1 by default), so a node with
no configuration never multicasts onto a real network.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from zeroconf import IPVersion, ServiceStateChange
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from edgestate.sync.config import parse_address

log = logging.getLogger(__name__)

SERVICE_TYPE = "_edgestate._tcp.local."
# mDNS instance labels are capped at 63 bytes; the full node id is in the TXT record.
_INSTANCE_ID_CHARS = 40


@dataclass(frozen=True, slots=True)
class Found:
    """A peer address reported by a discovery source."""

    host: str
    port: int
    source: str
    node_id: str | None = None


FoundCallback = Callable[[Found], None]
LostCallback = Callable[[Found], None]


class Discovery(Protocol):
    """A source of peers. Callbacks run on the event loop that called ``start``."""

    async def start(self, on_found: FoundCallback, on_lost: LostCallback) -> None:
        """Begin reporting peers; returns once the source is running."""
        ...

    async def aclose(self) -> None:
        """Stop everything this source started (and say goodbye, for mDNS)."""
        ...


class StaticDiscovery:
    """Peers from configuration: reported once, never lost."""

    def __init__(self, addresses: tuple[str, ...]) -> None:
        self._addresses = [parse_address(a) for a in addresses]

    async def start(self, on_found: FoundCallback, on_lost: LostCallback) -> None:
        """Report every configured address."""
        for host, port in self._addresses:
            on_found(Found(host, port, "static"))

    async def aclose(self) -> None:
        """Nothing to stop."""


class MdnsDiscovery:
    """Announce this node and browse for others of the same cluster over mDNS."""

    def __init__(
        self, *, host: str, port: int, node_id: str, cluster_id: str, protocol_version: int
    ) -> None:
        self._host = host
        self._port = port
        self._node_id = node_id
        self._cluster_id = cluster_id
        self._version = protocol_version
        self._zc: AsyncZeroconf | None = None
        self._browser: AsyncServiceBrowser | None = None
        self._info: AsyncServiceInfo | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._by_name: dict[str, Found] = {}
        self._on_found: FoundCallback | None = None
        self._on_lost: LostCallback | None = None
        self.available = False
        # Set once our own announcement finished probing (tests wait on it).
        self.registered = asyncio.Event()

    async def start(self, on_found: FoundCallback, on_lost: LostCallback) -> None:
        """Start announcing (probing runs in the background) and browsing."""
        self._on_found, self._on_lost = on_found, on_lost
        # Bind to the listen address's interface only; 0.0.0.0 means all of them,
        # which the deployment chose by listening on all of them.
        interfaces: Any = [self._host] if self._host not in ("0.0.0.0", "") else None
        try:
            if interfaces is None:
                self._zc = AsyncZeroconf(ip_version=IPVersion.V4Only)
            else:
                self._zc = AsyncZeroconf(interfaces=interfaces, ip_version=IPVersion.V4Only)
        except OSError as exc:
            log.warning(
                "mDNS unavailable on %s (%s): discovery runs on static peers only",
                self._host,
                exc,
            )
            return
        self.available = True
        address = self._host if interfaces is not None else "127.0.0.1"
        self._info = AsyncServiceInfo(
            SERVICE_TYPE,
            f"es-{self._node_id[:_INSTANCE_ID_CHARS]}.{SERVICE_TYPE}",
            addresses=[socket.inet_aton(address)],
            port=self._port,
            properties={
                "node": self._node_id,
                "cluster": self._cluster_id,
                "proto": str(self._version),
            },
        )
        self._spawn(self._register())
        self._browser = AsyncServiceBrowser(
            self._zc.zeroconf, SERVICE_TYPE, handlers=[self._on_change]
        )

    async def aclose(self) -> None:
        """Stop browsing, send the goodbye, close the sockets."""
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            # asyncio.wait, not awaiting each under suppress(CancelledError), so a
            # caller's timeout can still cancel this close.
            await asyncio.wait(list(self._tasks))
        if self._zc is None:
            return
        if self._browser is not None:
            await self._browser.async_cancel()
        if self._info is not None and self.registered.is_set():
            # The returned task must be awaited, or the goodbye is never sent.
            await (await self._zc.async_unregister_service(self._info))
        await self._zc.async_close()
        self._zc = None

    async def _register(self) -> None:
        assert self._zc is not None and self._info is not None
        try:
            await (await self._zc.async_register_service(self._info))
        except Exception as exc:  # zeroconf raises several unrelated types here
            log.warning("mDNS announcement failed (%s): peers must dial us", exc)
            return
        self.registered.set()

    def _on_change(
        self, zeroconf: Any, service_type: str, name: str, state_change: ServiceStateChange
    ) -> None:
        if state_change is ServiceStateChange.Removed:
            found = self._by_name.pop(name, None)
            if found is not None and self._on_lost is not None:
                self._on_lost(found)
            return
        self._spawn(self._resolve(service_type, name))

    async def _resolve(self, service_type: str, name: str) -> None:
        assert self._zc is not None
        info = AsyncServiceInfo(service_type, name)
        if not await info.async_request(self._zc.zeroconf, 3000):
            return
        props = {
            k.decode(errors="replace"): (v or b"").decode(errors="replace")
            for k, v in info.properties.items()
        }
        node = props.get("node")
        addresses = info.parsed_addresses(IPVersion.V4Only)
        if node in (None, self._node_id) or not addresses or info.port is None:
            return
        if props.get("cluster") != self._cluster_id:
            log.info("mDNS: ignoring %s of another cluster", name)
            return
        found = Found(addresses[0], info.port, "mdns", node)
        self._by_name[name] = found
        if self._on_found is not None:
            self._on_found(found)

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
