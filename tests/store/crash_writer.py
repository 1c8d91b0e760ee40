"""Child process for the kill -9 test: writes from several threads, printing each ack.

A line is printed only after the store acknowledged the write (after its fsync),
so every line the parent read names a write that must survive the kill.
"""

from __future__ import annotations

import sys
import threading

from edgestate.store import GcMode, Set, Store, StoreConfig

path, threads, gc = sys.argv[1], int(sys.argv[2]), GcMode(sys.argv[3])
# Small compactions: with gc=solo, collections run (and get killed) all along.
store = Store.open(path, StoreConfig(compact_min_log_bytes=4096, gc=gc))
store.create_document("d")
out_lock = threading.Lock()
print("ready", flush=True)


def loop(t: int) -> None:
    i = 0
    while True:
        key = f"t{t}-{i}"
        if i % 3 == 0:
            total = store.incr("d", f"count{t}", 1)
            line = f"incr {t} {total}"
        else:
            store.batch([Set("d", key, key.encode()), Set("d", f"last{t}", key.encode())])
            line = f"set {key}"
        with out_lock:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()
        i += 1


for t in range(threads):
    threading.Thread(target=loop, args=(t,), daemon=True).start()
threading.Event().wait()
