"""The Zig example modules, built with the ziglang package and run end to end."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edgestate.guest import EXAMPLES, EXAMPLES_DIR, build_example
from edgestate.runtime import Runtime, sign_module
from edgestate.store import Store

pytestmark = pytest.mark.timeout(120)  # a cold zig build takes a few seconds per module


def load_example(runtime: Runtime, key: Ed25519PrivateKey, name: str, build_dir: Path) -> str:
    wasm = build_example(name, build_dir).read_bytes()
    manifest = (EXAMPLES_DIR / f"{name}.manifest.json").read_bytes()
    return runtime.load(wasm, manifest, sign_module(wasm, manifest, key)).name


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_builds_small(name: str, guest_build_dir: Path) -> None:
    wasm = build_example(name, guest_build_dir)
    assert wasm.read_bytes()[:4] == b"\0asm" and wasm.stat().st_size < 4096
    assert build_example(name, guest_build_dir) == wasm  # cached by source hash


def test_counter_counts_durably(
    runtime: Runtime, key: Ed25519PrivateKey, store: Store, guest_build_dir: Path
) -> None:
    name = load_example(runtime, key, "counter", guest_build_dir)
    assert [runtime.invoke(name, b"hits").output for _ in range(3)] == [b"1", b"2", b"3"]
    assert runtime.invoke(name).output == b"1"  # default key "visits"
    assert store.get_counter("counters", "hits") == 3


def test_kv_echo_sets_and_reads_back(
    runtime: Runtime, key: Ed25519PrivateKey, store: Store, guest_build_dir: Path
) -> None:
    name = load_example(runtime, key, "kv_echo", guest_build_dir)
    assert runtime.invoke(name, b"greeting=hello").output == b"hello"
    assert runtime.invoke(name, b"greeting").output == b"hello"
    assert store.get("kv", "greeting") == b"hello"


def test_session_store_reads_and_writes_several_keys(
    runtime: Runtime, key: Ed25519PrivateKey, store: Store, guest_build_dir: Path
) -> None:
    name = load_example(runtime, key, "session_store", guest_build_dir)
    store.set("sessions", "abc:prefs", b"dark")
    first = runtime.invoke(name, b"abc")
    second = runtime.invoke(name, b"abc")
    assert (first.output, second.output) == (b"hits=1 bytes=1", b"hits=2 bytes=2")
    assert first.writes == 3
    assert store.get("sessions", "abc:data") == b".."
    assert store.get_counter("sessions", "abc:hits") == 2
    assert len(store.get("sessions", "abc:last_seen") or b"") == 8


async def test_concurrent_async_invocations_all_commit(
    runtime: Runtime, key: Ed25519PrivateKey, store: Store, guest_build_dir: Path
) -> None:
    name = load_example(runtime, key, "counter", guest_build_dir)
    results = await asyncio.gather(*(runtime.ainvoke(name, b"n") for _ in range(50)))
    assert all(r.status == 0 for r in results)
    assert store.get_counter("counters", "n") == 50


def test_concurrent_threads_each_run_their_own_invocation(
    runtime: Runtime, key: Ed25519PrivateKey, store: Store, guest_build_dir: Path
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    counter = load_example(runtime, key, "counter", guest_build_dir)
    echo = load_example(runtime, key, "kv_echo", guest_build_dir)

    def work(i: int) -> tuple[bytes, bytes]:
        return (
            runtime.invoke(counter, b"threads").output,
            runtime.invoke(echo, f"t{i}={i}".encode()).output,
        )

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(work, range(40)))
    assert [echo_out for _, echo_out in results] == [str(i).encode() for i in range(40)]
    # Invocations are atomic, not isolated: concurrent ones may report the same
    # total, but every increment counts.
    assert all(1 <= int(c) <= 40 for c, _ in results)
    assert store.get_counter("counters", "threads") == 40
