"""Child process for the kill -9 test of ``Store.abatches``: rounds of 16 batches
queued in one hand-off, printing each batch's key once its future resolved.

A line is printed only after the store acknowledged the batch (after its fsync),
so every line the parent read names a write that must survive the kill.
"""

from __future__ import annotations

import asyncio
import sys

from edgestate.store import Set, Store, StoreConfig


async def main(path: str) -> None:
    store = Store.open(path, StoreConfig(compact_min_log_bytes=4096))
    store.create_document("d")
    print("ready", flush=True)
    n = 0
    while True:
        keys = [f"k{n + i}" for i in range(16)]
        n += 16
        futures = store.abatches(
            [[Set("d", k, k.encode()), Set("d", "last", k.encode())] for k in keys]
        )
        pending = dict(zip(futures, keys, strict=True))
        while pending:
            done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for future in done:
                future.result()
                sys.stdout.write(f"set {pending.pop(future)}\n")
            sys.stdout.flush()


asyncio.run(main(sys.argv[1]))
