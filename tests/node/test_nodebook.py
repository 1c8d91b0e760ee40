"""Node records in ``_nodes`` on real LMDB stores: bounded, learned from a replicated
update, timed (write-to-visible), and unreadable ones ignored without stopping."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgestate.node.nodebook import (
    MAX_ERROR_CHARS,
    MAX_RECORD_MODULES,
    MAX_RECORD_PEERS,
    NODES_DOC,
    WTV_BUCKETS,
    NodeBook,
    VisibleHistogram,
    record_body,
    record_fingerprint,
)
from edgestate.store import Set, Store


def _module(i: int, error: str | None = None) -> dict[str, Any]:
    return {
        "name": f"m{i:04d}",
        "state": "refused" if error else "active",
        "version": "1.0.0",
        "offered_version": "1.0.0",
        "error_code": "untrusted_publisher" if error else None,
        "error": error,
    }


def _peer(i: int, state: str = "connected") -> dict[str, Any]:
    return {"node_id": f"n{i}", "address": None, "state": state, "lag": i, "last_sync": None}


def _body(modules: list[dict[str, Any]], peers: list[dict[str, Any]]) -> dict[str, Any]:
    return record_body(
        api="http://127.0.0.1:1", version="0", replica=7, started_at=0.0, modules=modules,
        peers=peers,
    )  # fmt: skip


def test_a_record_stays_bounded_whatever_the_node_runs() -> None:
    body = _body(
        [_module(i, "e" * 10_000) for i in range(MAX_RECORD_MODULES + 50)],
        [_peer(i) for i in range(MAX_RECORD_PEERS + 50)],
    )
    assert len(body["modules"]) == MAX_RECORD_MODULES
    assert len(body["peers"]) == MAX_RECORD_PEERS
    assert all(len(m["error"]) == MAX_ERROR_CHARS for m in body["modules"].values())
    assert len(json.dumps(body)) < 128 * 1024


def test_lag_alone_waits_for_the_heartbeat_but_a_link_state_does_not() -> None:
    base = record_fingerprint(_body([_module(1)], [_peer(1)]))
    lagging = dict(_peer(1), lag=500, last_sync=99.0)
    assert record_fingerprint(_body([_module(1)], [lagging])) == base
    assert record_fingerprint(_body([_module(1)], [_peer(1, "backoff")])) != base
    assert record_fingerprint(_body([_module(1, "refused")], [_peer(1)])) != base


def test_histogram_counts_skew_as_zero_and_bounds_quantiles() -> None:
    h = VisibleHistogram()
    assert h.quantile(0.5) is None
    for s in (0.0004, 0.003, 0.003, 0.04, 100.0):
        h.observe(s)
    h.observe(-0.2)
    assert h.count == 6 and h.skewed == 1
    assert h.quantile(0.5) == 0.005
    assert h.quantile(1.0) == WTV_BUCKETS[-1]  # the overflow bucket reports the last bound
    out = h.to_json()
    assert sum(b["count"] for b in out["buckets"]) == 6
    assert out["buckets"][-1] == {"le_ms": None, "count": 1}


async def _replicate(src: Store, dst: Store) -> None:
    # as sync delivers it: the diff the receiver lacks, applied as a remote update
    update = src.diff(NODES_DOC, dst.state_vector(NODES_DOC))
    await dst.aapply_update(NODES_DOC, update, origin="peer")


async def _until(check: Callable[[], bool]) -> None:
    for _ in range(500):  # the follower runs on this loop: let it take the event
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the node book did not learn the record within 5 s")


async def test_a_replicated_record_is_learned_and_timed(tmp_path: Path) -> None:
    a, b = Store.open(tmp_path / "a"), Store.open(tmp_path / "b")
    books: list[NodeBook] = []
    try:
        for store, node_id in ((a, "node-a"), (b, "node-b")):
            book = NodeBook(store, node_id, lambda: _body([_module(1)], []), record_fingerprint)
            await book.start()
            books.append(book)
        book_a, book_b = books
        await _replicate(a, b)
        await _until(lambda: "node-a" in book_b.seen)
        seen = book_b.seen["node-a"]
        assert seen.record["modules"]["m0001"]["state"] == "active"
        assert seen.write_to_visible_s is not None and seen.seen_at is not None
        assert book_b.visible.count == 1
        assert [s.record["node_id"] for s in book_b.records()] == ["node-b", "node-a"]
        # a damaged record is skipped, not fatal: the next good one is still learned
        await a.abatch([Set(NODES_DOC, "n/node-x", b"\xff not json")])
        await _replicate(a, b)
        await book_a.publish()
        await _replicate(a, b)
        await _until(lambda: book_b.visible.count == 2)
        assert "node-x" not in book_b.seen
        # a heartbeat is a few dozen bytes: it refreshes liveness and is timed too
        first_seen = book_b.seen["node-a"].seen_at
        await book_a.beat()
        assert len(a.get(NODES_DOC, "b/node-a") or b"") < 64
        await _replicate(a, b)
        await _until(lambda: book_b.visible.count == 3)
        assert book_b.seen["node-a"].seen_at >= first_seen  # type: ignore[operator]
        assert book_b.seen["node-a"].record["modules"]  # the record is kept, not replaced
        assert book_a.visible.count == 0  # its own record, replicated or not, is never timed
    finally:
        for book in books:
            await book.close()
        a.close()
        b.close()
