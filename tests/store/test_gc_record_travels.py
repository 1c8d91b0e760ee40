"""A collection record travels with the collected history it describes.

Real stores exchanging diffs: a collector (SOLO mode), fresh stores bootstrapped
from it, a store that kept the full history, and an offline Yjs replica that
missed the collection. Whatever the order the history and its record arrive in,
every store refuses the offline replica like the collector does, and takes every
honest diff.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pycrdt import Doc, Map

from edgestate.errors import InvalidUpdateError, StaleReplicaError
from edgestate.store import Durability, GcMode, Store, StoreConfig

SMALL = StoreConfig(gc=GcMode.SOLO, durability=Durability.BATCHED, compact_min_log_bytes=4096)


def _doc(client: int, update: bytes | None = None) -> tuple[Doc, Map]:  # type: ignore[type-arg]
    doc: Doc = Doc(client_id=client)
    root = doc.get("root", type=Map)
    if update is not None:
        doc.apply_update(update)
    return doc, root


def _sync(dst: Doc, src: Doc) -> None:
    dst.apply_update(src.get_update(dst.get_state()))


@dataclass
class Cluster:
    collector: Store
    full: Store  # applied the same history, collected nothing
    offline: Doc  # holds a collected item but not what was re-hung below it
    offline_root: Map  # type: ignore[type-arg]
    open: list[Store]

    def fresh(self, path: Path) -> Store:
        store = Store.open(path)
        self.open.append(store)
        return store


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    a, a_root = _doc(1)
    s, s_root = _doc(3)
    b, b_root = _doc(2)
    a_root["k"] = b"P"
    _sync(s, a)
    for i in range(200):  # enough overwrites for a collection to be worth it
        s_root[f"g{i % 4}"] = f"{i}".encode()
    s_root["k"] = b"s"
    offline, offline_root = _doc(77, s.get_update())  # a Yjs client that goes offline
    _sync(b, s)
    b_root["k"] = b"K"
    collector = Store.open(tmp_path / "collector", SMALL)
    full = Store.open(tmp_path / "full")
    for store in (collector, full):
        store.apply_update("d", b.get_update(), origin="peer:b", create=True)
    collector.compact("d")
    collector.compact("d")
    assert collector.gc_status("d").collected_items > 0
    c = Cluster(collector, full, offline, offline_root, [collector, full])
    yield c
    for store in c.open:
        store.close()


def refuses_the_offline_replica(store: Store, c: Cluster) -> None:
    """``store`` turns the offline replica away by name, as the collector does."""
    with pytest.raises(StaleReplicaError, match="afresh"):
        store.diff("d", c.offline.get_state())
    write, write_root = _doc(77, c.offline.get_update())
    write_root["k"] = b"written offline, on an entry since collected"
    with pytest.raises(StaleReplicaError, match="garbage-collected"):
        store.apply_update("d", write.get_update(), origin="peer:offline")
    assert store.get("d", "k") == b"K"


def test_the_collector_itself_refuses_the_offline_replica(cluster: Cluster) -> None:
    refuses_the_offline_replica(cluster.collector, cluster)


def test_a_diff_of_collected_history_carries_its_record(tmp_path: Path, cluster: Cluster) -> None:
    update, record = cluster.collector.diff_with_record("d", None)
    assert record is not None and record == cluster.collector.gc_record("d").record()  # type: ignore[union-attr]
    # Nothing collected, nothing to carry.
    assert cluster.full.diff_with_record("d", None) == (cluster.full.diff("d"), None)

    fresh = cluster.fresh(tmp_path / "fresh")
    assert fresh.apply_update("d", update, origin="peer:c", create=True, record=record)
    # The record is there from the same commit on: no window in which the fresh
    # store serves the offline replica a history it would lose a key with.
    assert fresh.gc_record("d").record() == record  # type: ignore[union-attr]
    refuses_the_offline_replica(fresh, cluster)
    assert fresh.scan("d", limit=100).items == cluster.collector.scan("d", limit=100).items
    # And across a restart.
    fresh.close()
    with Store.open(tmp_path / "fresh") as again:
        refuses_the_offline_replica(again, cluster)


def test_a_fresh_store_passes_the_record_on_with_what_it_holds(
    tmp_path: Path, cluster: Cluster
) -> None:
    first = cluster.fresh(tmp_path / "first")
    update, record = cluster.collector.diff_with_record("d")
    first.apply_update("d", update, origin="peer:c", create=True, record=record)
    second = cluster.fresh(tmp_path / "second")
    update, record = first.diff_with_record("d", None)
    assert record is not None
    second.apply_update("d", update, origin="peer:first", create=True, record=record)
    refuses_the_offline_replica(second, cluster)


def test_a_record_merged_before_its_history_refuses_no_honest_diff(
    tmp_path: Path, cluster: Cluster
) -> None:
    """The reverse order: found in the hardening issue, a fresh store that merged
    the record first refused every honest diff ("where this node re-hung
    history") and could never catch up."""
    update, record = cluster.collector.diff_with_record("d", None)
    assert record is not None
    for source in ("collector", "full"):
        fresh = cluster.fresh(tmp_path / f"fresh-{source}")
        fresh.create_document("d")  # say a held push created it
        fresh.apply_update("d", b"\x00\x00", record=record)  # the record alone
        assert fresh.gc_record("d").record() == record  # type: ignore[union-attr]
        honest = (
            update if source == "collector" else cluster.full.diff("d", fresh.state_vector("d"))
        )
        assert fresh.apply_update("d", honest, origin=f"peer:{source}")
        assert fresh.get("d", "k") == b"K"
        assert fresh.scan("d", limit=100).items == cluster.collector.scan("d", limit=100).items
        refuses_the_offline_replica(fresh, cluster)


def test_a_full_history_store_merging_the_record_refuses_like_the_collector(
    cluster: Cluster,
) -> None:
    update, record = cluster.collector.diff_with_record("d", cluster.full.state_vector("d"))
    # Nothing new to it but the delete set, and the record: both in one commit.
    cluster.full.apply_update("d", update, origin="peer:c", record=record)
    refuses_the_offline_replica(cluster.full, cluster)


def test_a_refused_update_merges_no_record(tmp_path: Path, cluster: Cluster) -> None:
    update, record = cluster.collector.diff_with_record("d", None)
    fresh = cluster.fresh(tmp_path / "fresh")
    with pytest.raises(InvalidUpdateError):
        fresh.apply_update("d", update[:-3] + b"\xff\xff\xff", create=True, record=record)
    assert not fresh.has_document("d")
