"""The compiled-module cache: restarts do not recompile, and a corrupt entry is
recompiled, never trusted."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edgestate.runtime import Runtime, RuntimeConfig, TrustPolicy
from edgestate.store import Store

from .helpers import deploy, manifest, wat

WASM = wat("global_state")


def start(store: Store, policy: TrustPolicy, key: Ed25519PrivateKey, cache: Path) -> Runtime:
    runtime = Runtime(store, policy, RuntimeConfig(cache_dir=cache))
    deploy(runtime, key, WASM, manifest("cached"))
    return runtime


def entry(cache: Path) -> Path:
    (path,) = cache.glob("*.cwasm")
    return path


def test_restart_loads_from_cache_without_compiling(
    store: Store, policy: TrustPolicy, key: Ed25519PrivateKey, tmp_path: Path
) -> None:
    cache = tmp_path / "c"
    with start(store, policy, key, cache) as first:
        assert (first.cache.stats.misses, first.cache.stats.hits) == (1, 0)
    with start(store, policy, key, cache) as second:
        assert (second.cache.stats.misses, second.cache.stats.hits) == (0, 1)
        assert second.invoke("cached").output == (1).to_bytes(4, "little")


def flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def garbage(path: Path) -> None:
    path.write_bytes(b"\x7fELF not an artifact")


def other_engine(path: Path) -> None:
    data = path.read_bytes()
    magic_end = data.index(b"\n") + 1
    header_end = data.index(b"\n", magic_end)
    header = json.loads(data[magic_end:header_end])
    header["engine"] = "0" * 32
    path.write_bytes(data[:magic_end] + json.dumps(header).encode() + data[header_end:])


@pytest.mark.parametrize("corrupt", [flip_last_byte, truncate, garbage, other_engine])
def test_corrupt_cache_entry_is_recompiled_not_trusted(
    store: Store,
    policy: TrustPolicy,
    key: Ed25519PrivateKey,
    tmp_path: Path,
    corrupt: Callable[[Path], None],
) -> None:
    cache = tmp_path / "c"
    start(store, policy, key, cache).close()
    corrupt(entry(cache))
    with start(store, policy, key, cache) as runtime:
        stats = runtime.cache.stats
        assert (stats.corrupt, stats.misses, stats.hits) == (1, 1, 0)
        assert runtime.invoke("cached").status == 0
    with start(store, policy, key, cache) as runtime:  # the entry was rewritten
        assert runtime.cache.stats.hits == 1


def test_entry_of_another_wasm_is_not_used(
    store: Store, policy: TrustPolicy, key: Ed25519PrivateKey, tmp_path: Path
) -> None:
    cache = tmp_path / "c"
    with Runtime(store, policy, RuntimeConfig(cache_dir=cache)) as runtime:
        deploy(runtime, key, wat("noop"), manifest("noop"))
    noop_entry = entry(cache)
    with Runtime(store, policy, RuntimeConfig(cache_dir=cache)) as runtime:
        target = runtime.cache.path_for(hashlib.sha256(WASM).hexdigest())
        assert target is not None
        target.write_bytes(noop_entry.read_bytes())
        deploy(runtime, key, WASM, manifest("cached"))
        assert runtime.cache.stats.corrupt == 1
        assert runtime.invoke("cached").output == (1).to_bytes(4, "little")


def test_without_a_cache_directory_modules_still_load(
    store: Store, policy: TrustPolicy, key: Ed25519PrivateKey
) -> None:
    with Runtime(store, policy, RuntimeConfig()) as runtime:
        deploy(runtime, key, WASM, manifest("cached"))
        assert runtime.cache.path_for("x") is None
        assert runtime.invoke("cached").status == 0


def test_with_a_key_a_planted_entry_is_refused(
    store: Store, policy: TrustPolicy, key: Ed25519PrivateKey, tmp_path: Path
) -> None:
    # Found in review: digests catch corruption, not someone who can write the
    # cache directory. An entry made without the node's key (or a forged one
    # with valid digests) is not loaded.
    cache = tmp_path / "c"
    start(store, policy, key, cache).close()  # an unkeyed entry, digests all valid
    secret = b"k" * 32
    config = RuntimeConfig(cache_dir=cache, cache_key=secret)
    with Runtime(store, policy, config) as runtime:
        deploy(runtime, key, WASM, manifest("cached"))
        assert (runtime.cache.stats.corrupt, runtime.cache.stats.misses) == (1, 1)
    with Runtime(store, policy, config) as runtime:  # its own keyed entry is reused
        deploy(runtime, key, WASM, manifest("cached"))
        assert runtime.cache.stats.hits == 1
    other = RuntimeConfig(cache_dir=cache, cache_key=b"x" * 32)
    with Runtime(store, policy, other) as runtime:  # a different key: refused
        deploy(runtime, key, WASM, manifest("cached"))
        assert runtime.cache.stats.corrupt == 1
