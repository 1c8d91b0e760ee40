#!/usr/bin/env python3
"""The main job. Until `edgestate demo` (a 3-node cluster) lands, this opens a store,
writes through the durable path, reads back and prints what it did."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from edgestate.store import Incr, Set, Store


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="edgestate-demo-") as tmp:
        data = Path(tmp) / "data"
        with Store.open(data) as store:
            store.create_document("sessions")
            t0 = time.perf_counter()
            store.batch([Set("sessions", "user:42", b"alice"), Incr("sessions", "visits", 1)])
            t1 = time.perf_counter()
            print(f"wrote sessions/user:42 and sessions/visits durably in {(t1 - t0) * 1e3:.2f} ms")
        with Store.open(data) as store:  # reopened: what was acknowledged is there
            t0 = time.perf_counter()
            value = store.get("sessions", "user:42")
            t1 = time.perf_counter()
            print(f"read back after reopen: user:42 = {value!r} in {(t1 - t0) * 1e6:.1f} us")
            print(f"visits = {store.get_counter('sessions', 'visits')}")


if __name__ == "__main__":
    main()
