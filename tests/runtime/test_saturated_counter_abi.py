"""kv_get and kv_incr on a counter that replicas' concurrent increments pushed past
int64, from real wasm against a real store: it reads saturated, and kv_incr's
refusal follows the value read (schemas/host-abi.json)."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edgestate.host.abi import ErrorCode
from edgestate.runtime import Runtime
from edgestate.store import Store

from .helpers import K1, OUT, R, open_app, run

pytestmark = pytest.mark.timeout(30)

I64_MAX = (1 << 63) - 1


@pytest.fixture
def saturated(store: Store, tmp_path: Path) -> Store:
    """``app/k1`` holds slots summing to 2**63: I64_MAX here, 1 on another replica."""
    store.incr("app", "k1", I64_MAX)
    with Store.open(tmp_path / "other") as other:
        other.create_document("app")
        other.incr("app", "k1", 1)
        store.apply_update("app", other.diff("app", store.state_vector("app")), origin="peer")
    assert store.get_counter("app", "k1") == I64_MAX
    return store


def test_kv_get_reads_a_counter_past_int64_saturated(
    runtime: Runtime, key: Ed25519PrivateKey, saturated: Store
) -> None:
    results, dumped, _ = run(
        runtime, key, [open_app(), ("kv_get", R(0), K1, 2, OUT, 8)], dumps=[(OUT, 8)]
    )
    assert results[1] == 8 and struct.unpack("<q", dumped) == (I64_MAX,)


def test_kv_incr_away_from_the_range_is_refused_towards_it_taken(
    runtime: Runtime, key: Ed25519PrivateKey, saturated: Store
) -> None:
    results, _, _ = run(runtime, key, [open_app(), ("kv_incr", R(0), K1, 2, 1, OUT)])
    assert results[1] == ErrorCode.VALUE_TOO_LARGE
    results, dumped, _ = run(
        runtime, key, [open_app(), ("kv_incr", R(0), K1, 2, -3, OUT)], dumps=[(OUT, 8)]
    )
    assert results[1] == 0
    # The total kv_incr returns is the value read minus 3 (the host sees only the
    # read value); the slots behind it summed to one more, so reads say one more.
    assert struct.unpack("<q", dumped) == (I64_MAX - 3,)
    # Committed: the slots now sum to 2**63 - 3, back inside the range.
    assert saturated.get_counter("app", "k1") == I64_MAX - 2
