"""A plain value written over a counter replaces it, whether by the store's API or a Yjs client."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pycrdt import Doc, Map

from edgestate.store import Store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(tmp_path / "store") as s:
        s.create_document("d")
        yield s


def _client_of(store: Store) -> tuple[Doc[Any], Map[Any]]:
    """A foreign Yjs client holding the store's whole state."""
    doc: Doc[Any] = Doc()
    doc.apply_update(store.diff("d"))
    root: Map[Any] = doc.get("root", type=Map)
    return doc, root


def _send(store: Store, doc: Doc[Any], before: bytes) -> None:
    store.apply_update("d", doc.get_update(before), origin="yjs:1")


def test_set_over_a_counter_replaces_it_through_the_store(store: Store) -> None:
    store.incr("d", "n", 5)
    store.set("d", "n", b"plain")
    assert store.lookup("d", "n") == (b"plain", False)
    store.delete("d", "n")
    assert store.lookup("d", "n") == (None, False)


def test_a_yjs_root_write_over_a_counter_replaces_it(store: Store) -> None:
    store.incr("d", "n", 5)
    doc, root = _client_of(store)
    sv = doc.get_state()
    root["n"] = b"plain"
    _send(store, doc, sv)
    assert store.lookup("d", "n") == (b"plain", False)
    # The counter is gone, not hidden: the client sees its slots deleted ...
    doc.apply_update(store.diff("d", doc.get_state()))
    assert not [k for k in doc.get("counters", type=Map).keys() if k.startswith("n\x00")]
    # ... and deleting the plain value leaves nothing behind, as a store delete does.
    sv = doc.get_state()
    del root["n"]
    _send(store, doc, sv)
    assert store.lookup("d", "n") == (None, False)
    assert store.incr("d", "n", 1) == 1  # a fresh counter, not 5 + 1


def test_the_replacement_survives_a_reopen(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s") as s:
        s.create_document("d")
        s.incr("d", "n", 5)
        doc, root = _client_of(s)
        sv = doc.get_state()
        root["n"] = b"plain"
        _send(s, doc, sv)
        sv = doc.get_state()
        del root["n"]
        _send(s, doc, sv)
    with Store.open(tmp_path / "s") as s:
        assert s.lookup("d", "n") == (None, False)
        assert s.incr("d", "n", 1) == 1
