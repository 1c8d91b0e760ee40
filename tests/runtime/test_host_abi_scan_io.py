"""kv_scan, input/output, log and time, and how host-call failures end: called from
real wasm against a real store (the key-value functions are in test_host_abi.py)."""

from __future__ import annotations

import logging
import time
from typing import Any

import msgpack
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edgestate.host.abi import ErrorCode, HostLimits
from edgestate.runtime import Runtime
from edgestate.store import Store

from .helpers import (
    CUR,
    DATA,
    K1,
    K2,
    KBAD,
    OUT,
    VAL,
    R,
    abi_script,
    deploy,
    manifest,
    open_app,
    run,
)

pytestmark = pytest.mark.timeout(30)

E = ErrorCode


# --- kv_scan --------------------------------------------------------------------


def scan_all(
    runtime: Runtime, key: Ed25519PrivateKey, store: Store, page_keys: int, pre_calls: list[Any]
) -> list[str]:
    """Page through prefix "k" from wasm, one invocation per page."""
    keys: list[str] = []
    cursor = b""
    for _ in range(50):
        results, dumped, _ = run(
            runtime,
            key,
            [open_app(), *pre_calls, ("kv_scan", R(0), K1, 1, CUR, len(cursor), OUT, 4000)],
            data={CUR: cursor} if cursor else {},
            dumps=[(OUT, 4000)],
        )
        length = results[-1]
        assert 0 < length <= 4000
        page_keys_, next_cursor = msgpack.unpackb(dumped[:length])
        keys += page_keys_
        if next_cursor is None:
            return keys
        cursor = next_cursor
    raise AssertionError("scan did not finish")


def test_kv_scan_pages_through_keys_with_prefix(
    store: Store, policy: Any, key: Ed25519PrivateKey
) -> None:
    from edgestate.runtime import RuntimeConfig

    expected = [f"k{i:03d}" for i in range(25)]
    store.batch([_set("app", k, b"v") for k in [*expected, "other", "j1"]])
    with Runtime(store, policy, RuntimeConfig(host=HostLimits(scan_page_keys=10))) as rt:
        assert scan_all(rt, key, store, 10, []) == expected


def test_kv_scan_sees_writes_of_the_same_invocation(
    runtime: Runtime, key: Ed25519PrivateKey, store: Store
) -> None:
    store.batch([_set("app", "k1", b"v"), _set("app", "k9", b"v")])
    results, dumped, _ = run(
        runtime,
        key,
        [
            open_app(),
            ("kv_set", R(0), K2, 2, VAL, 1),
            ("kv_delete", R(0), K1, 2),
            ("kv_scan", R(0), K1, 1, CUR, 0, OUT, 4000),
        ],
        dumps=[(OUT, 200)],
    )
    assert msgpack.unpackb(dumped[: results[-1]]) == [["k2", "k9"], None]


def test_kv_scan_reports_length_when_buffer_is_small(
    runtime: Runtime, key: Ed25519PrivateKey, store: Store
) -> None:
    store.batch([_set("app", f"k{i}", b"v") for i in range(10)])
    results, _, _ = run(runtime, key, [open_app(), ("kv_scan", R(0), K1, 1, CUR, 0, OUT, 3)])
    assert results[1] > 3


def test_kv_scan_errors_on_forged_cursor(runtime: Runtime, key: Ed25519PrivateKey) -> None:
    forged = msgpack.packb(["not-a-store-cursor", "k"])
    results, _, _ = run(
        runtime,
        key,
        [
            open_app(),
            ("kv_scan", R(0), K1, 1, CUR, len(forged), OUT, 100),
            ("kv_scan", R(0), K1, 1, VAL, 11, OUT, 100),
        ],
        data={CUR: forged},
    )
    assert results[1:] == [E.INVALID_CURSOR, E.INVALID_CURSOR]


# --- input, output, log, time -------------------------------------------------------


def test_input_len_and_input_read_follow_length_or_retry(
    runtime: Runtime, key: Ed25519PrivateKey
) -> None:
    results, dumped, _ = run(
        runtime,
        key,
        [("input_len",), ("input_read", OUT, 2), ("input_read", OUT, 100)],
        data={OUT: b"__"},
        dumps=[(OUT, 9)],
        input=b"some-data",
    )
    assert results == [9, 9, 9] and dumped == b"some-data"


def test_output_write_appends_in_order(runtime: Runtime, key: Ed25519PrivateKey) -> None:
    calls = [("output_write", VAL, 5), ("output_write", VAL + 5, 6)]
    _, _, result = run(runtime, key, calls)
    assert result.output.startswith(b"hello world")


def test_log_reaches_python_logging(
    runtime: Runtime, key: Ed25519PrivateKey, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="edgestate.guest"):
        run(runtime, key, [("log", 3, VAL, 11), ("log", 99, VAL, 5)])
    messages = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "edgestate.guest"]
    assert messages == [(logging.WARNING, "[probe] hello world"), (logging.INFO, "[probe] hello")]


def test_now_ms_is_wall_clock(runtime: Runtime, key: Ed25519PrivateKey) -> None:
    before = time.time_ns() // 1_000_000
    results, _, _ = run(runtime, key, [("now_ms",)])
    assert before <= results[0] <= time.time_ns() // 1_000_000


def _set(doc: str, k: str, v: bytes) -> Any:
    from edgestate.store import Set

    return Set(doc, k, v)


def test_error_statuses_leave_no_tracebacks_behind(
    runtime: Runtime, key: Ed25519PrivateKey
) -> None:
    import gc

    def tracebacks() -> int:
        gc.collect()
        return sum(type(o).__name__ == "traceback" for o in gc.get_objects())

    calls = [open_app()] + [("kv_get", R(0), KBAD, 2, OUT, 8)] * 20
    run(runtime, key, calls)
    before = tracebacks()
    for _ in range(5):
        runtime.invoke("probe")
    assert tracebacks() - before < 20


def test_store_failure_during_a_host_call_traps_not_a_status(
    runtime: Runtime, key: Ed25519PrivateKey, store: Store
) -> None:
    from edgestate.errors import GuestTrapError, InvocationError

    wasm = abi_script([open_app(), ("kv_get", R(0), K1, 2, OUT, 8)], DATA)
    deploy(runtime, key, wasm, manifest("probe", writes=("app",)))
    store.close()
    with pytest.raises(InvocationError, match="store failed during") as info:
        runtime.invoke("probe")
    assert not isinstance(info.value, GuestTrapError)
