"""Store.document_infos: every document's figures in one transaction, as document_info
gives them one by one (the dashboard's documents table reads them all each poll)."""

from __future__ import annotations

from pathlib import Path

from edgestate.store import Set, Store


def test_document_infos_match_document_info_for_every_document(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s") as store:
        for i, name in enumerate(["b", "a", "c.d"]):
            store.create_document(name)
            store.batch([Set(name, f"k{k}", b"x" * (i + 1) * 10) for k in range(i + 1)])
        store.create_document("empty")
        infos = store.document_infos()
        assert [i.name for i in infos] == sorted(["a", "b", "c.d", "empty"])
        assert infos == [store.document_info(i.name) for i in infos]
        assert {i.name: i.keys for i in infos} == {"a": 2, "b": 1, "c.d": 3, "empty": 0}
