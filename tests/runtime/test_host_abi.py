"""Each host function, called from real wasm against a real store."""

from __future__ import annotations

import logging
import struct
import time
from typing import Any

import msgpack
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edgestate.host.abi import ErrorCode, HostLimits
from edgestate.runtime import InvocationResult, Runtime
from edgestate.store import Store

from .helpers import R, abi_script, deploy, manifest, split_output

pytestmark = pytest.mark.timeout(30)

E = ErrorCode
APP, RO, OTHER, NOPE = 100, 110, 120, 130  # offsets of document names
K1, K2, KBAD, VAL, OUT, CUR = 200, 210, 220, 300, 1000, 5000
DATA = {
    APP: b"app",
    RO: b"ro",
    OTHER: b"other",
    NOPE: b"missing",
    K1: b"k1",
    K2: b"k2",
    KBAD: b"\xff\xfe",
    VAL: b"hello world",
}


def run(
    runtime: Runtime,
    key: Ed25519PrivateKey,
    calls: list[tuple[Any, ...]],
    *,
    data: dict[int, bytes] | None = None,
    dumps: list[tuple[int, int]] | None = None,
    input: bytes = b"",
    reads: tuple[str, ...] = ("ro",),
    writes: tuple[str, ...] = ("app",),
) -> tuple[list[int], bytes, InvocationResult]:
    wasm = abi_script(calls, {**DATA, **(data or {})}, dumps)
    deploy(runtime, key, wasm, manifest("probe", reads=reads, writes=writes))
    result = runtime.invoke("probe", input)
    results, dumped = split_output(result.output, len(calls))
    return results, dumped, result


def open_app() -> tuple[Any, ...]:
    return ("doc_open", APP, 3)


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
