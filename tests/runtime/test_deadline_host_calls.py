"""A wall-time budget holds even for a guest that lives in host calls.

Epoch interruption fires only in wasm code; a module looping on host calls is
stopped by the deadline check every host function makes on entry. No timed
asserts here: the overrun is measured by scripts/bench_containment.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edgestate.errors import DeadlineExceededError
from edgestate.runtime import Runtime, RuntimeConfig, TrustPolicy
from edgestate.store import Set, Store

from .helpers import deploy, manifest, wat

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def runtime(store: Store, policy: TrustPolicy, tmp_path: Path) -> Iterator[Runtime]:
    # Epochs of a second: the epoch deadline of these short budgets lies a second
    # or two out, so only the host functions' own check can end them on time,
    # and the error says which of the two did.
    with Runtime(store, policy, RuntimeConfig(epoch_tick_ms=1000)) as rt:
        yield rt


def test_host_call_loop_is_stopped_on_entry_to_a_host_call(
    runtime: Runtime, store: Store, key: Ed25519PrivateKey
) -> None:
    store.batch([Set("bench", "big", b"x" * (1 << 20))])
    deploy(
        runtime,
        key,
        wat("kv_get_forever"),
        manifest(
            "hostloop", reads=("bench",), fuel=1_000_000_000, wall_time_ms=50, memory_pages=20
        ),
    )
    with pytest.raises(DeadlineExceededError, match=r"50 ms .*on entry to host function kv_get"):
        runtime.invoke("hostloop")
    deploy(runtime, key, wat("noop"), manifest("noop"))
    assert runtime.invoke("noop").status == 0  # the next invocation has its own deadline


def test_a_deadline_in_a_host_call_drops_the_staged_writes(
    runtime: Runtime, store: Store, key: Ed25519PrivateKey
) -> None:
    deploy(
        runtime,
        key,
        wat("kv_set_loop"),
        manifest("setloop", writes=("bench",), fuel=1_000_000_000, wall_time_ms=30),
    )
    with pytest.raises(DeadlineExceededError, match="on entry to host function"):
        runtime.invoke("setloop", (1 << 30).to_bytes(4, "little"))
    assert store.scan("bench", "").items == []
