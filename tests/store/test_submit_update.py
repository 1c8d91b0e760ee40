"""Store.submit_update: queued to the writer at once, with the options of
apply_update (create, record) that a sync peer's updates need."""

from __future__ import annotations

from pathlib import Path

import pytest
from pycrdt import Doc, Map

from edgestate.errors import UnknownDocumentError
from edgestate.store import Durability, Store, StoreConfig


def _update(key: str) -> bytes:
    doc: Doc = Doc()
    doc.get("root", type=Map)[key] = b"v"
    update: bytes = doc.get_update()
    return update


async def test_create_makes_the_document_and_the_future_tells_it_changed(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s", StoreConfig(durability=Durability.BATCHED))
    try:
        update = _update("k")
        assert await store.submit_update("fresh", update, origin="peer:x", create=True)
        assert store.get("fresh", "k") == b"v"
        # The same bytes again change nothing.
        assert not await store.submit_update("fresh", update, origin="peer:y", create=True)
    finally:
        store.close()


async def test_without_create_an_unknown_document_is_refused_at_once(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s", StoreConfig(durability=Durability.BATCHED))
    try:
        with pytest.raises(UnknownDocumentError):
            store.submit_update("missing", _update("k"))
        assert not store.has_document("missing")
    finally:
        store.close()
