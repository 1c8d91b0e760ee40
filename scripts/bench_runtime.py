"""Benchmark the runtime's per-request path against its floor and two alternatives.

    python scripts/bench_runtime.py [--quick]

Prints median and p99 (microseconds) of, in one run and one process:

* cold start: load a signed module whose compiled form is in the on-disk cache
  (verify, deserialize, link) and run its first instruction;
* a no-op invocation end to end, beside the floor: raw ``InstancePre``
  instantiate + unchecked call of the same module on the same engine;
* one ``kv_get`` and one ``kv_set`` host call made from inside wasm (a loop of
  N calls, minus the same module with N = 0, divided by N);
* the session-store example: our path, the naive wasmtime-py path a user would
  write by hand (new Linker per request, ordinary calls, ``Memory.read/write``),
  both without the durable commit (identical for both, and it would hide the
  difference), and ours end to end with the fsynced commit;
* a fresh Python subprocess doing the no-op work (process isolation's cost).
"""

from __future__ import annotations

import ctypes
import gc
import json
import statistics
import struct
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import wasmtime
from wasmtime import _ffi as ffi

from edgestate.guest import EXAMPLES_DIR, build_example
from edgestate.host.abi import FUNCTIONS, ErrorCode
from edgestate.host.kv import Overlay
from edgestate.runtime import Runtime, RuntimeConfig, TrustPolicy, generate_key, sign_module
from edgestate.runtime.policy import public_key_text
from edgestate.runtime.signing import raw_public_key
from edgestate.store import Store

REPO = Path(__file__).resolve().parents[1]
WAT = REPO / "tests" / "runtime" / "wat"
NO_FINALIZER = ctypes.cast(0, ctypes.CFUNCTYPE(None, ctypes.c_void_p))
Row = tuple[str, float, float, str]


def measure(fn: Callable[[], Any], n: int, warmup: int = 200) -> list[float]:
    """Per-call wall times of ``fn`` in microseconds."""
    for _ in range(warmup):
        fn()
    gc.collect()
    samples = []
    clock = time.perf_counter_ns
    for _ in range(n):
        start = clock()
        fn()
        samples.append((clock() - start) / 1000)
    return samples


def med_p99(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def manifest(name: str, writes: list[str]) -> bytes:
    return json.dumps(
        {
            "name": name,
            "version": "1.0.0",
            "documents": {"read": [], "write": writes},
            "limits": {"fuel": 100_000_000, "memory_pages": 32, "max_output_bytes": 4096},
        }
    ).encode()


class RawFloor:
    """wasmtime-py's raw bindings: InstancePre instantiate + unchecked call, nothing else."""

    def __init__(self, engine: wasmtime.Engine, wasm: bytes) -> None:
        self.engine_ptr = engine.ptr()
        self.pre = wasmtime.Linker(engine).instantiate_pre(wasmtime.Module(engine, wasm))
        self.pre_ptr = self.pre.ptr()

    def __call__(self) -> int:
        store = ffi.wasmtime_store_new(self.engine_ptr, None, NO_FINALIZER)
        context = ffi.wasmtime_store_context(store)
        ffi.wasmtime_context_set_fuel(context, 1_000_000)  # the engine meters fuel
        ffi.wasmtime_context_set_epoch_deadline(context, 1000)  # and checks epochs
        instance = ffi.wasmtime_instance_t()
        trap = ctypes.POINTER(ffi.wasm_trap_t)()
        ffi.wasmtime_instance_pre_instantiate(
            self.pre_ptr, context, ctypes.byref(instance), ctypes.byref(trap)
        )
        item = ffi.wasmtime_extern_t()
        ffi.wasmtime_instance_export_get(
            context, ctypes.byref(instance), b"handle", 6, ctypes.byref(item)
        )
        slots = (ffi.wasmtime_val_raw_t * 1)()
        ffi.wasmtime_func_call_unchecked(
            context, ctypes.byref(item.of.func), slots, 1, ctypes.byref(trap)
        )
        status = slots[0].i32
        ffi.wasmtime_store_delete(store)
        return int(status)


class NaiveHost:
    """The ABI as a user would write it with wasmtime-py's ordinary API.

    Same semantics (grants, overlay) as edgestate's host; only the glue differs:
    a new Linker per request, ``Func`` host functions with ``Caller``,
    ``caller["memory"]`` and ``Memory.read/write``, and an ordinary call.
    """

    def __init__(self, engine: wasmtime.Engine, wasm: bytes, store: Store) -> None:
        self.engine = engine
        self.module = wasmtime.Module(engine, wasm)
        self.store = store

    def __call__(self, payload: bytes) -> bytes:
        engine, store = self.engine, self.store
        overlay = Overlay(store, max_keys=1024, max_bytes=8 << 20)
        handles: list[str] = []
        output: list[bytes] = []
        i32, i64 = wasmtime.ValType.i32(), wasmtime.ValType.i64()

        def mem(caller: wasmtime.Caller) -> wasmtime.Memory:
            memory = caller["memory"]
            assert isinstance(memory, wasmtime.Memory)
            return memory

        def text(caller: wasmtime.Caller, ptr: int, length: int) -> str:
            return mem(caller).read(caller, ptr, ptr + length).decode()

        def doc_open(caller: wasmtime.Caller, ptr: int, length: int) -> int:
            handles.append(text(caller, ptr, length))
            return len(handles) - 1

        def kv_get(caller: wasmtime.Caller, doc: int, kp: int, kl: int, op: int, oc: int) -> int:
            value = overlay.get(handles[doc], text(caller, kp, kl))
            if value is None:
                return int(ErrorCode.NOT_FOUND)
            if len(value) <= oc:
                mem(caller).write(caller, value, op)
            return len(value)

        def kv_set(caller: wasmtime.Caller, doc: int, kp: int, kl: int, vp: int, vl: int) -> int:
            value = mem(caller).read(caller, vp, vp + vl)
            overlay.set(handles[doc], text(caller, kp, kl), value)
            return 0

        def kv_incr(caller: wasmtime.Caller, doc: int, kp: int, kl: int, d: int, op: int) -> int:
            total = overlay.incr(handles[doc], text(caller, kp, kl), d)
            mem(caller).write(caller, struct.pack("<q", total), op)
            return 0

        def input_read(caller: wasmtime.Caller, op: int, oc: int) -> int:
            if len(payload) <= oc:
                mem(caller).write(caller, payload, op)
            return len(payload)

        def output_write(caller: wasmtime.Caller, ptr: int, length: int) -> int:
            output.append(mem(caller).read(caller, ptr, ptr + length))
            return 0

        def now_ms() -> int:
            return time.time_ns() // 1_000_000

        impls: dict[str, Callable[..., Any]] = {
            "doc_open": doc_open,
            "kv_get": kv_get,
            "kv_set": kv_set,
            "kv_incr": kv_incr,
            "input_read": input_read,
            "output_write": output_write,
            "now_ms": now_ms,
        }
        linker = wasmtime.Linker(engine)
        types = {"i32": i32, "i64": i64}
        for f in FUNCTIONS:
            if f.name in impls:
                ty = wasmtime.FuncType(
                    [types[t] for _, t in f.params], [types[r] for r in f.results]
                )
                linker.define_func(
                    "edgestate", f.name, ty, impls[f.name], access_caller=f.name != "now_ms"
                )
        wstore = wasmtime.Store(engine)
        wstore.set_fuel(100_000_000)
        wstore.set_epoch_deadline(1000)
        instance = linker.instantiate(wstore, self.module)
        handle = instance.exports(wstore)["handle"]
        assert isinstance(handle, wasmtime.Func)
        if handle(wstore) != 0:
            raise RuntimeError("naive session store failed")
        overlay.ops()  # the batch a real host would commit
        return b"".join(output)


SUBPROCESS = textwrap.dedent(
    """
    import sys, wasmtime
    c = wasmtime.Config(); c.consume_fuel = True
    e = wasmtime.Engine(c)
    m = wasmtime.Module.deserialize_file(e, sys.argv[1])
    s = wasmtime.Store(e); s.set_fuel(1000000)
    i = wasmtime.Linker(e).instantiate(s, m)
    sys.exit(i.exports(s)["handle"](s))
    """
)


@click.command()
@click.option("--quick", is_flag=True, help="Fewer samples (for a smoke run).")
def main(quick: bool) -> None:
    """Run every measurement and print one table."""
    scale = 0.1 if quick else 1.0
    n_fast = int(20_000 * scale)
    tmp = Path(tempfile.mkdtemp(prefix="edgestate-bench-"))
    key = generate_key()
    policy = TrustPolicy.from_dict(
        {
            "version": 1,
            "publishers": [
                {
                    "name": "bench",
                    "public_key": public_key_text(raw_public_key(key)),
                    "documents": {"read": ["*"], "write": ["*"]},
                    "limits": {
                        "fuel": 1_000_000_000,
                        "wall_time_ms": 10_000,
                        "memory_pages": 256,
                        "max_output_bytes": 1 << 20,
                    },
                }
            ],
        }
    )
    store = Store.open(tmp / "data")
    for doc in ("bench", "sessions"):
        store.create_document(doc)
    store.set("bench", "k", b"x" * 100)
    store.set("sessions", "s1:prefs", b"dark-mode")
    runtime = Runtime(store, policy, RuntimeConfig(cache_dir=tmp / "cache"))

    def deploy(name: str, wasm: bytes, writes: list[str]) -> tuple[bytes, bytes, bytes]:
        man = manifest(name, writes)
        sig = sign_module(wasm, man, key)
        runtime.load(wasm, man, sig)
        return wasm, man, sig

    noop = wasmtime.wat2wasm((WAT / "noop.wat").read_text())
    noop_bundle = deploy("noop", noop, [])
    deploy("kv-get", wasmtime.wat2wasm((WAT / "kv_get_loop.wat").read_text()), ["bench"])
    deploy("kv-set", wasmtime.wat2wasm((WAT / "kv_set_loop.wat").read_text()), ["bench"])
    session_wasm = build_example("session_store", REPO / "build" / "guest-wasm").read_bytes()
    session_manifest = (EXAMPLES_DIR / "session_store.manifest.json").read_bytes()
    runtime.load(session_wasm, session_manifest, sign_module(session_wasm, session_manifest, key))

    rows: list[Row] = []

    def row(name: str, samples: list[float], target: str = "") -> tuple[float, float]:
        med, p99 = med_p99(samples)
        rows.append((name, med, p99, target))
        return med, p99

    # Cold start: the compiled module is in the disk cache; load it and run it once.
    def cold() -> None:
        runtime.load(*noop_bundle)
        runtime.run("noop")

    row("cold start (cache -> first instruction)", measure(cold, int(2000 * scale), 20))

    floor = RawFloor(runtime.engine, noop)
    floor_med, _ = row("floor: raw InstancePre + unchecked call", measure(floor, n_fast))
    noop_med, _ = row(
        "no-op invocation, end to end", measure(lambda: runtime.invoke("noop"), n_fast)
    )

    def per_call(name: str, calls: int, reps: int) -> list[float]:
        zero, many = struct.pack("<i", 0), struct.pack("<i", calls)
        for _ in range(20):
            runtime.run(name, many)
        out = []
        for _ in range(reps):
            base = runtime.run(name, zero).execute_ns
            out.append((runtime.run(name, many).execute_ns - base) / calls / 1000)
        return out

    get_med, _ = row("kv_get host call from wasm", per_call("kv-get", 1000, int(300 * scale) or 30))
    set_med, _ = row("kv_set host call from wasm", per_call("kv-set", 1000, int(300 * scale) or 30))

    ours_med, _ = row(
        "session store, ours (no commit)",
        measure(lambda: runtime.run("session-store", b"s1"), int(5000 * scale)),
    )
    naive = NaiveHost(runtime.engine, session_wasm, store)
    assert naive(b"s1").startswith(b"hits=")
    naive_med, _ = row(
        "session store, naive wasmtime-py (no commit)",
        measure(lambda: naive(b"s1"), int(2000 * scale), 50),
    )
    row(
        "session store, ours end to end (fsync commit)",
        measure(lambda: runtime.invoke("session-store", b"s1"), int(300 * scale) or 30, 10),
    )
    naive_noop = NaiveHost(runtime.engine, noop, store)
    row("no-op, naive wasmtime-py", measure(lambda: naive_noop(b""), int(5000 * scale), 50))

    raw_artifact = tmp / "noop.cwasm"
    raw_artifact.write_bytes(wasmtime.Module(wasmtime.Engine(_fuel_config()), noop).serialize())

    def subprocess_run() -> None:
        subprocess.run([sys.executable, "-c", SUBPROCESS, str(raw_artifact)], check=True)

    row("no-op in a fresh Python subprocess", measure(subprocess_run, int(30 * scale) or 5, 2))

    runtime.close()
    store.close()

    click.echo(f"{'measurement':48} {'median us':>10} {'p99 us':>10}  target")
    for name, med, p99, target in rows:
        click.echo(f"{name:48} {med:10.1f} {p99:10.1f}  {target}")
    click.echo("")
    checks = [
        (
            f"no-op / floor = {noop_med / floor_med:.2f}x (target <= 1.5x)",
            noop_med <= 1.5 * floor_med,
        ),
        (f"kv_get = {get_med:.2f} us (target < 3 us)", get_med < 3),
        (f"kv_set = {set_med:.2f} us (target < 10 us)", set_med < 10),
        (
            f"session store naive / ours = {naive_med / ours_med:.1f}x (target >= 5x)",
            naive_med >= 5 * ours_med,
        ),
    ]
    for text, ok in checks:
        click.echo(f"{'PASS' if ok else 'MISS'}  {text}")


def _fuel_config() -> wasmtime.Config:
    config = wasmtime.Config()
    config.consume_fuel = True
    return config


if __name__ == "__main__":
    main()
