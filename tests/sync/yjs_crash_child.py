"""Child process for the /yjs kill -9 test: a store and the y-websocket endpoint.

Usage: python yjs_crash_child.py DATA_DIR HOLD_KEY. Prints ``port N`` once
serving on 127.0.0.1. With a non-empty HOLD_KEY, the writer thread is held
forever once it has accepted an update that sets that key, before committing it
(an early change listener that never returns): the window in which other clients
already have the update and the disk does not. The parent then kills it (-9).
"""

from __future__ import annotations

import asyncio
import sys
import threading

from aiohttp import web

from edgestate.store import ChangeEvent, Store, StoreConfig
from edgestate.sync.yjs import YjsEndpoint


async def main(path: str, hold_key: str) -> None:
    store = Store.open(path, StoreConfig())  # durability sync
    store.create_document("d")
    endpoint = YjsEndpoint(store)
    await endpoint.start()
    never = threading.Event()

    def hold(event: ChangeEvent) -> None:
        if hold_key and hold_key in event.keys:
            print("held", flush=True)
            never.wait()

    store.subscribe(hold, early=True)  # after the endpoint's: it hears first
    app = web.Application()
    app.add_routes(endpoint.routes())
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    print(f"port {runner.addresses[0][1]}", flush=True)
    await asyncio.Event().wait()  # until killed


asyncio.run(main(sys.argv[1], sys.argv[2]))
