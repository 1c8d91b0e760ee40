"""Two sync nodes that find each other by mDNS only; run inside a network namespace.

Run by test_discovery.py under ``unshare -n`` with loopback up, never on the
machine's real interfaces. Prints one JSON line with what happened.
Usage: python -m tests.sync.mdns_pair WORKDIR CA_DIR
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

from edgestate.store import Durability, Set, Store, StoreConfig
from edgestate.sync import tls
from edgestate.sync.config import SyncConfig
from edgestate.sync.daemon import SyncDaemon


async def main(work: Path, ca_dir: Path) -> dict[str, object]:
    daemons: list[SyncDaemon] = []
    stores: list[Store] = []
    started = time.monotonic()
    try:
        for name in ("m1", "m2"):
            tls.issue_node(ca_dir, name, work / name)
            store = Store.open(work / f"{name}-data", StoreConfig(durability=Durability.BATCHED))
            stores.append(store)
            config = SyncConfig(port=0, tls=tls.files_for(work / name, name), mdns=True)
            daemon = SyncDaemon(store, config)
            await daemon.start()
            daemons.append(daemon)
        if not all(d.multicast_available for d in daemons):
            return {"multicast": False}
        async with asyncio.timeout(20):
            for daemon in daemons:
                await daemon.wait_connected(1)
        found_after = time.monotonic() - started
        stores[0].create_document("docs")
        stores[0].batch([Set("docs", "k", b"found by mdns")])
        deadline = time.monotonic() + 10
        while not (stores[1].has_document("docs") and stores[1].get("docs", "k")):
            if time.monotonic() > deadline:
                raise TimeoutError("the write did not replicate")
            await asyncio.sleep(0.01)
        peers = [p for d in daemons for p in d.peers()]
        return {
            "multicast": True,
            "connected_after_s": round(found_after, 2),
            "sources": sorted({p.source for p in peers}),
            "peer_ids": sorted(str(p.node_id) for p in peers),
            "expected_ids": sorted(d.node_id for d in daemons),
            "value": stores[1].get("docs", "k").decode(),  # type: ignore[union-attr]
        }
    finally:
        for daemon in daemons:
            await daemon.close()
        for store in stores:
            store.close()


if __name__ == "__main__":
    result = asyncio.run(main(Path(sys.argv[1]), Path(sys.argv[2])))
    print(json.dumps(result))
