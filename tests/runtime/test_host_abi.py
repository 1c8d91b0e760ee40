"""doc_open and the key-value functions (kv_get, kv_set, kv_delete, kv_incr), called
from real wasm against a real store (the rest is in test_host_abi_scan_io.py)."""

from __future__ import annotations

import struct
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edgestate.host.abi import ErrorCode, HostLimits
from edgestate.runtime import Runtime
from edgestate.store import Store

from .helpers import (
    CUR,
    K1,
    K2,
    KBAD,
    NOPE,
    OTHER,
    OUT,
    RO,
    VAL,
    R,
    open_app,
    run,
)

pytestmark = pytest.mark.timeout(30)

E = ErrorCode

# --- doc_open -------------------------------------------------------------------


def test_doc_open_returns_one_handle_per_granted_document(
    runtime: Runtime, key: Ed25519PrivateKey
) -> None:
    results, _, _ = run(runtime, key, [open_app(), ("doc_open", RO, 2), open_app()])
    assert results[0] >= 0 and results[1] >= 0 and results[0] != results[1]
    assert results[2] == results[0]


def test_doc_open_errors_when_document_is_not_granted(
    runtime: Runtime, key: Ed25519PrivateKey
) -> None:
    results, _, _ = run(runtime, key, [("doc_open", OTHER, 5), ("doc_open", NOPE, 7)])
    assert results == [E.ACCESS_DENIED, E.ACCESS_DENIED]


def test_doc_open_errors_when_granted_document_does_not_exist(
    runtime: Runtime, key: Ed25519PrivateKey
) -> None:
    results, _, _ = run(runtime, key, [("doc_open", NOPE, 7)], writes=("app", "missing"))
    assert results == [E.UNKNOWN_DOCUMENT]


def test_doc_open_errors_on_non_utf8_name(runtime: Runtime, key: Ed25519PrivateKey) -> None:
    results, _, _ = run(runtime, key, [("doc_open", KBAD, 2)])
    assert results == [E.INVALID_ARGUMENT]


def test_doc_open_handle_table_is_bounded(
    store: Store, policy: Any, key: Ed25519PrivateKey, tmp_path: Any
) -> None:
    from edgestate.runtime import RuntimeConfig

    config = RuntimeConfig(host=HostLimits(max_handles=1))
    with Runtime(store, policy, config) as rt:
        results, _, _ = run(rt, key, [open_app(), ("doc_open", RO, 2)])
    assert results[1] == E.LIMIT_EXCEEDED


# --- kv_get ---------------------------------------------------------------------


def test_kv_get_copies_value_and_returns_length(
    runtime: Runtime, key: Ed25519PrivateKey, store: Store
) -> None:
    store.set("app", "k1", b"stored!")
    results, dumped, _ = run(
        runtime, key, [open_app(), ("kv_get", R(0), K1, 2, OUT, 64)], dumps=[(OUT, 7)]
    )
    assert results[1] == 7 and dumped == b"stored!"


def test_kv_get_returns_not_found_when_absent(runtime: Runtime, key: Ed25519PrivateKey) -> None:
    results, _, _ = run(runtime, key, [open_app(), ("kv_get", R(0), K2, 2, OUT, 64)])
    assert results[1] == E.NOT_FOUND == -1


def test_kv_get_reports_length_without_copying_when_buffer_is_small(
    runtime: Runtime, key: Ed25519PrivateKey, store: Store
) -> None:
    store.set("app", "k1", b"0123456789")
    results, dumped, _ = run(
        runtime,
        key,
        [open_app(), ("kv_get", R(0), K1, 2, OUT, 4), ("kv_get", R(0), K1, 2, OUT, 10)],
        data={OUT: b"XXXX"},
        dumps=[(OUT, 10)],
    )
    assert results[1:] == [10, 10]
    assert dumped == b"0123456789"  # the retry with room copied it


def test_kv_get_reads_a_read_only_grant(
    runtime: Runtime, key: Ed25519PrivateKey, store: Store
) -> None:
    store.set("ro", "k1", b"v")
    results, _, _ = run(runtime, key, [("doc_open", RO, 2), ("kv_get", R(0), K1, 2, OUT, 8)])
    assert results[1] == 1


def test_kv_get_sees_counter_as_8_le_bytes(
    runtime: Runtime, key: Ed25519PrivateKey, store: Store
) -> None:
    store.incr("app", "k1", -5)
    results, dumped, _ = run(
        runtime, key, [open_app(), ("kv_get", R(0), K1, 2, OUT, 8)], dumps=[(OUT, 8)]
    )
    assert results[1] == 8 and struct.unpack("<q", dumped) == (-5,)


@pytest.mark.parametrize(("ptr", "length"), [(KBAD, 2), (K1, 0), (K1, 401)])
def test_kv_get_errors_on_invalid_key(
    runtime: Runtime, key: Ed25519PrivateKey, ptr: int, length: int
) -> None:
    results, _, _ = run(runtime, key, [open_app(), ("kv_get", R(0), ptr, length, OUT, 8)])
    assert results[1] == E.INVALID_KEY


def test_kv_functions_error_on_bad_handle(runtime: Runtime, key: Ed25519PrivateKey) -> None:
    results, _, _ = run(
        runtime,
        key,
        [
            ("kv_get", 0, K1, 2, OUT, 8),
            ("kv_set", 7, K1, 2, VAL, 5),
            ("kv_delete", -1, K1, 2),
            ("kv_incr", 3, K1, 2, 1, OUT),
            ("kv_scan", 9, K1, 0, CUR, 0, OUT, 100),
        ],
    )
    assert results == [E.BAD_HANDLE] * 5


# --- kv_set / kv_delete -----------------------------------------------------------


def test_kv_set_commits_when_the_invocation_succeeds(
    runtime: Runtime, key: Ed25519PrivateKey, store: Store
) -> None:
    results, _, result = run(runtime, key, [open_app(), ("kv_set", R(0), K1, 2, VAL, 11)])
    assert results[1] == 0 and result.writes == 1
    assert store.get("app", "k1") == b"hello world"


def test_kv_set_is_read_back_within_the_invocation(
    runtime: Runtime, key: Ed25519PrivateKey
) -> None:
    results, dumped, _ = run(
        runtime,
        key,
        [open_app(), ("kv_set", R(0), K1, 2, VAL, 5), ("kv_get", R(0), K1, 2, OUT, 16)],
        dumps=[(OUT, 5)],
    )
    assert results[2] == 5 and dumped == b"hello"


def test_kv_set_errors_when_document_is_read_only(
    runtime: Runtime, key: Ed25519PrivateKey, store: Store
) -> None:
    results, _, _ = run(
        runtime,
        key,
        [
            ("doc_open", RO, 2),
            ("kv_set", R(0), K1, 2, VAL, 5),
            ("kv_delete", R(0), K1, 2),
            ("kv_incr", R(0), K1, 2, 1, OUT),
        ],
    )
    assert results[1:] == [E.ACCESS_DENIED] * 3
    assert store.get("ro", "k1") is None


def test_kv_set_errors_when_value_is_too_large(
    tmp_path: Any, policy: Any, key: Ed25519PrivateKey
) -> None:
    from edgestate.runtime import RuntimeConfig
    from edgestate.store import StoreConfig

    with Store.open(tmp_path / "small", StoreConfig(max_value_bytes=8)) as small:
        small.create_document("app")
        with Runtime(small, policy, RuntimeConfig()) as rt:
            results, _, _ = run(
                rt,
                key,
                [open_app(), ("kv_set", R(0), K1, 2, VAL, 8), ("kv_set", R(0), K2, 2, VAL, 9)],
            )
        assert results[1:] == [0, E.VALUE_TOO_LARGE]
        assert small.get("app", "k2") is None


def test_kv_set_errors_when_invocation_write_budget_is_spent(
    store: Store, policy: Any, key: Ed25519PrivateKey
) -> None:
    from edgestate.runtime import RuntimeConfig

    config = RuntimeConfig(host=HostLimits(max_write_keys=1))
    with Runtime(store, policy, config) as rt:
        results, _, _ = run(
            rt,
            key,
            [
                open_app(),
                ("kv_set", R(0), K1, 2, VAL, 1),
                ("kv_set", R(0), K1, 2, VAL, 2),
                ("kv_set", R(0), K2, 2, VAL, 1),
            ],
        )
    assert results[1:] == [0, 0, E.LIMIT_EXCEEDED]


def test_kv_delete_removes_on_commit_and_hides_within_invocation(
    runtime: Runtime, key: Ed25519PrivateKey, store: Store
) -> None:
    store.set("app", "k1", b"old")
    results, _, _ = run(
        runtime,
        key,
        [
            open_app(),
            ("kv_delete", R(0), K1, 2),
            ("kv_get", R(0), K1, 2, OUT, 8),
            ("kv_delete", R(0), K2, 2),
        ],
    )
    assert results[1:] == [0, E.NOT_FOUND, 0]
    assert store.get("app", "k1") is None


# --- kv_incr --------------------------------------------------------------------


def test_kv_incr_writes_new_total_and_accumulates(
    runtime: Runtime, key: Ed25519PrivateKey, store: Store
) -> None:
    store.incr("app", "k1", 10)
    results, dumped, _ = run(
        runtime,
        key,
        [open_app(), ("kv_incr", R(0), K1, 2, 5, OUT), ("kv_incr", R(0), K1, 2, -20, OUT + 8)],
        dumps=[(OUT, 16)],
    )
    assert results[1:] == [0, 0]
    assert struct.unpack("<qq", dumped) == (15, -5)
    assert store.get_counter("app", "k1") == -5


def test_kv_incr_errors_on_plain_value(
    runtime: Runtime, key: Ed25519PrivateKey, store: Store
) -> None:
    store.set("app", "k1", b"text")
    results, _, _ = run(runtime, key, [open_app(), ("kv_incr", R(0), K1, 2, 1, OUT)])
    assert results[1] == E.WRONG_TYPE


def test_kv_incr_after_set_in_same_invocation_is_wrong_type(
    runtime: Runtime, key: Ed25519PrivateKey
) -> None:
    results, _, _ = run(
        runtime,
        key,
        [open_app(), ("kv_set", R(0), K1, 2, VAL, 3), ("kv_incr", R(0), K1, 2, 1, OUT)],
    )
    assert results[2] == E.WRONG_TYPE


def test_kv_incr_after_delete_counts_from_zero(
    runtime: Runtime, key: Ed25519PrivateKey, store: Store
) -> None:
    store.incr("app", "k1", 100)
    results, dumped, _ = run(
        runtime,
        key,
        [open_app(), ("kv_delete", R(0), K1, 2), ("kv_incr", R(0), K1, 2, 3, OUT)],
        dumps=[(OUT, 8)],
    )
    assert results[1:] == [0, 0]
    assert struct.unpack("<q", dumped) == (3,)
    assert store.get_counter("app", "k1") == 3


def test_kv_incr_errors_on_overflow(runtime: Runtime, key: Ed25519PrivateKey, store: Store) -> None:
    store.incr("app", "k1", 2**63 - 2)
    results, _, _ = run(runtime, key, [open_app(), ("kv_incr", R(0), K1, 2, 5, OUT)])
    assert results[1] == E.VALUE_TOO_LARGE
