"""bench_containment.py's runtime-level part: the deadline overrun of each looping
module in the bench's own process (no HTTP), and the manifests it deploys."""

from __future__ import annotations

import asyncio
import contextlib
import json
import tempfile
import time
from pathlib import Path

import wasmtime

REPO = Path(__file__).resolve().parents[1]
WAT = REPO / "tests" / "runtime" / "wat"
FUEL = 10**11  # never the limit: the wall clock ends the loops


def manifest(
    name: str,
    wall_time_ms: int,
    memory_pages: int = 4,
    reads: tuple[str, ...] = (),
    fuel: int = FUEL,
) -> bytes:
    return json.dumps(
        {
            "name": name,
            "version": "1.0.0",
            "documents": {"read": list(reads), "write": []},
            "limits": {
                "fuel": fuel,
                "wall_time_ms": wall_time_ms,
                "memory_pages": memory_pages,
                "max_output_bytes": 1024,
            },
        }
    ).encode()


def runtime_overruns(runs: int, budget_ms: int) -> dict[str, list[float]]:
    """elapsed - budget (ms) of each looping module, invoked in this process."""
    from edgestate.errors import DeadlineExceededError
    from edgestate.runtime import Runtime, TrustPolicy, generate_key, raw_public_key, sign_module
    from edgestate.runtime.policy import public_key_text
    from edgestate.store import Set, Store

    key = generate_key()
    policy = {
        "version": 1,
        "publishers": [
            {
                "name": "bench",
                "public_key": public_key_text(raw_public_key(key)),
                "documents": {"read": ["bench"], "write": []},
                "limits": {
                    "fuel": FUEL,
                    "wall_time_ms": budget_ms,
                    "memory_pages": 20,
                    "max_output_bytes": 1024,
                },
            }
        ],
    }
    out: dict[str, list[float]] = {}
    runs_ms: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        store = Store.open(Path(tmp) / "data")
        store.create_document("bench")
        store.batch([Set("bench", "big", b"x" * (1 << 20))])
        with Runtime(store, TrustPolicy.from_dict(policy)) as runtime:
            for name, wat, pages in (
                ("spin", "infinite_loop", 4),
                ("hostloop", "kv_get_forever", 20),
            ):
                wasm = wasmtime.wat2wasm((WAT / f"{wat}.wat").read_text())
                m = manifest(name, budget_ms, pages, ("bench",))
                runtime.load(wasm, m, sign_module(wasm, m, key))
                out[name] = []
                awaited: list[float] = []
                out[f"{name} (ainvoke)"] = awaited
                runs_ms[f"{name} (guest run)"] = ran = []
                for _ in range(runs):
                    t0 = time.perf_counter()
                    try:
                        runtime.invoke(name)
                    except DeadlineExceededError as exc:
                        if exc.ran_ns is not None:
                            ran.append(exc.ran_ns / 1e6 - budget_ms)
                    out[name].append((time.perf_counter() - t0) * 1000 - budget_ms)

                # On an invocation thread, awaited by a loop (the budget's verdict may
                # answer first: runtime.verdict), as a node or worker runs it. One loop
                # for all: a guest answered early still holds its slot, released on
                # that loop when its thread ends.
                # Then how long after that answer its guest's thread was done (its slot
                # freed): what the answer no longer waits for (0 when the thread answered).
                async def awaited_runs(name: str, into: list[float], after: list[float]) -> None:
                    for _ in range(runs):
                        t0 = time.perf_counter()
                        with contextlib.suppress(DeadlineExceededError):
                            await runtime.ainvoke(name)
                        answered = time.perf_counter()
                        into.append((answered - t0) * 1000 - budget_ms)
                        while runtime.admission.running(name):  # noqa: ASYNC110 (a count, no event)
                            await asyncio.sleep(0.0002)
                        after.append((time.perf_counter() - answered) * 1000)

                ended: list[float] = []
                runs_ms[f"{name} (ainvoke: thread done after)"] = ended
                asyncio.run(awaited_runs(name, awaited, ended))
        store.close()
    return {**out, **runs_ms}
