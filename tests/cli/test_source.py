"""One conformance suite for :class:`edgestate.cli.source.Source`, run against both
implementations: a real data directory (``LocalSource``) and a real node
subprocess (``RemoteSource``). ``inspect`` and ``kv`` print what a source returns,
so equal results here mean equal output whichever ``--data``/``--node`` is used.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgestate.cli.source import DOC_FIELDS, LocalSource, RemoteSource, Source
from edgestate.client import NodeClient
from edgestate.devkit import spawn_node
from edgestate.errors import EdgestateError
from edgestate.store import Delete, Incr, Set
from tests.schemas import validate


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeClient]:
    """One node for the module (tests use documents of their own)."""
    data = tmp_path_factory.mktemp("node")
    proc, info = spawn_node(
        ["--data", str(data), "--api-port", "0", "--sync-port", "0", "--no-mdns", "--workers", "0"],
        data / "ready.json",
        data / "node.log",
        env=dict(os.environ),
    )
    try:
        yield NodeClient(info["api"], (data / "admin.token").read_text().strip())
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(params=["local", "remote"])
def source(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Source]:
    if request.param == "local":
        made: Source = LocalSource(tmp_path / "data", readonly=False)
    else:
        made = RemoteSource(request.getfixturevalue("node"))
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def doc(request: pytest.FixtureRequest) -> str:
    """A document name of this test's own (the remote node is shared)."""
    return "d-" + request.node.originalname.removeprefix("test_").replace("_", "-")


def _error_code(call: object) -> str:
    assert callable(call)
    with pytest.raises(EdgestateError) as info:
        call()
    return info.value.code


def test_put_get_text_binary_and_absent(source: Source, doc: str) -> None:
    source.put(doc, "text", b"hello", True)
    source.put(doc, "blob", b"\xff\x00\x01", False)
    text = source.get(doc, "text")
    validate("cli/inspect-get.schema.json", text)
    assert text["doc"] == doc and text["key"] == "text" and text["found"] is True
    assert text["text"] == "hello" and text["type"] == "bytes"
    blob = source.get(doc, "blob")
    assert blob["text"] is None and blob["base64"] == "/wAB"
    absent = source.get(doc, "nope")
    validate("cli/inspect-get.schema.json", absent)
    assert absent == {"doc": doc, "key": "nope", "found": False, **_absent_fields(absent)}


def _absent_fields(desc: dict[str, object]) -> dict[str, object]:
    return {k: v for k, v in desc.items() if k not in ("doc", "key", "found")}


def test_same_answer_shapes_for_both(source: Source, doc: str) -> None:
    # Keys and types exactly as the other implementation gives them (pinned here).
    source.put(doc, "k", b"v", True)
    source.incr(doc, "n", 3, False)
    assert sorted(source.get(doc, "k")) == sorted(source.get(doc, "n"))
    assert sorted(source.get(doc, "k")) == sorted(source.get(doc, "absent"))
    page = source.scan(doc, "", None, 10)
    assert sorted(page) == ["cursor", "doc", "items", "prefix"]
    item_fields = sorted(set(source.get(doc, "k")) - {"doc"})
    assert [sorted(i) for i in page["items"]] == [item_fields] * 2


def test_put_into_a_missing_document_without_create(source: Source, doc: str) -> None:
    assert _error_code(lambda: source.put(doc, "k", b"v", False)) == "unknown_document"
    assert _error_code(lambda: source.incr(doc, "n", 1, False)) == "unknown_document"
    # Reading from a missing document is an error too, the same one.
    assert _error_code(lambda: source.get(doc, "k")) == "unknown_document"


def test_incr_totals_and_negative_deltas(source: Source, doc: str) -> None:
    assert source.incr(doc, "hits", 5, True) == 5
    assert source.incr(doc, "hits", -7, False) == -2
    got = source.get(doc, "hits")
    assert got["type"] == "counter" and got["counter"] == -2
    source.put(doc, "plain", b"x", False)
    assert _error_code(lambda: source.incr(doc, "plain", 1, False)) == "wrong_type"


def test_delete(source: Source, doc: str) -> None:
    source.put(doc, "k", b"v", True)
    source.delete(doc, "k")
    assert source.get(doc, "k")["found"] is False


def test_batch_of_every_op(source: Source, doc: str) -> None:
    source.batch(doc, [Set(doc, "a", b"1"), Set(doc, "gone", b"x"), Incr(doc, "n", 4)], True)
    source.batch(doc, [Delete(doc, "gone"), Incr(doc, "n", 1), Set(doc, "b", b"\x00")], False)
    assert source.get(doc, "a")["text"] == "1"
    assert source.get(doc, "gone")["found"] is False
    assert source.get(doc, "n")["counter"] == 5
    assert source.get(doc, "b")["base64"] == "AA=="


def test_batch_is_atomic(source: Source, doc: str) -> None:
    source.put(doc, "plain", b"x", True)
    bad = [Set(doc, "first", b"1"), Incr(doc, "plain", 1)]
    assert _error_code(lambda: source.batch(doc, bad, False)) == "wrong_type"
    assert source.get(doc, "first")["found"] is False


def test_batch_refuses_an_op_for_another_document(source: Source, doc: str) -> None:
    with pytest.raises(ValueError, match="in a batch for"):
        source.batch(doc, [Set("elsewhere", "k", b"v")], True)


def test_scan_pages_in_key_order(source: Source, doc: str) -> None:
    source.batch(doc, [Set(doc, f"user:{i}", f"n{i}".encode()) for i in range(5)], True)
    source.put(doc, "other", b"o", False)
    first = source.scan(doc, "user:", None, 3)
    validate("cli/inspect-scan.schema.json", first)
    assert first["doc"] == doc and first["prefix"] == "user:"
    assert [i["key"] for i in first["items"]] == ["user:0", "user:1", "user:2"]
    assert first["items"][0]["text"] == "n0"
    rest = source.scan(doc, "user:", first["cursor"], 3)
    assert [i["key"] for i in rest["items"]] == ["user:3", "user:4"]
    assert rest["cursor"] is None
    assert _error_code(lambda: source.scan(doc, "", "not a cursor", 3)) == "invalid_cursor"


def test_documents(source: Source, doc: str) -> None:
    source.batch(doc, [Set(doc, "a", b"12345"), Incr(doc, "n", 1)], True)
    rows = {d["name"]: d for d in source.documents()}
    validate("cli/inspect-docs.schema.json", {"documents": list(rows.values())})
    mine = rows[doc]
    assert sorted(mine) == sorted(DOC_FIELDS)
    assert mine["keys"] == 2 and mine["value_bytes"] >= 5 and mine["log_entries"] >= 1


def test_stats_have_the_same_fields(source: Source, doc: str, tmp_path: Path) -> None:
    source.put(doc, "k", b"v", True)
    stats = source.stats()
    assert "commits" not in stats and "compactions" not in stats
    reference = LocalSource(tmp_path / "reference", readonly=False)
    try:
        assert sorted(stats) == sorted(reference.stats())
    finally:
        reference.close()
