"""Crash safety, compaction, on-disk format checks and the writer lock."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import lmdb
import pytest
from pycrdt import Doc, Map

from edgestate.errors import FormatVersionError, StoreError, StoreLockedError
from edgestate.store import Durability, Set, Store, StoreConfig

CHILD = Path(__file__).with_name("crash_writer.py")


@pytest.mark.parametrize(
    ("threads", "gc"), [(1, "cluster"), (8, "cluster"), (8, "solo")], ids=["1", "8", "8-gc"]
)
def test_every_acknowledged_write_survives_kill_9(tmp_path: Path, threads: int, gc: str) -> None:
    data = tmp_path / "data"
    proc = subprocess.Popen(
        [sys.executable, str(CHILD), str(data), str(threads), gc],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    acked_sets: list[str] = []
    acked_counts: dict[str, int] = {}
    try:
        # With gc, long enough for collections to be installed (and interrupted).
        while len(acked_sets) + len(acked_counts) < (6000 if gc == "solo" else 1500):
            line = proc.stdout.readline()
            assert line, "writer died before the kill"
            parts = line.split()
            if parts[0] == "set":
                acked_sets.append(parts[1])
            else:
                acked_counts[parts[1]] = int(parts[2])
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        proc.stdout.close()
    with Store.open(data) as store:
        for key in acked_sets:
            assert store.get("d", key) == key.encode(), f"acknowledged {key} lost"
        for t, total in acked_counts.items():
            got = store.get_counter("d", f"count{t}")
            assert got is not None and got >= total, f"counter {t}: {got} < acked {total}"
        # The CRDT rebuilt from disk (a collected snapshot + log, with gc) says what
        # the materialized table says.
        crdt = Doc()
        root = crdt.get("root", type=Map)
        crdt.apply_update(store.diff("d"))
        for t in range(threads):
            assert bytes(root[f"last{t}"]) == store.get("d", f"last{t}")
        if gc == "solo":
            assert store.gc_status("d").collected_items > 0
        # the store still works after recovery
        store.set("d", "after", b"crash")
        assert store.get("d", "after") == b"crash"


def test_compaction_folds_the_log_and_keeps_state(store_dir: Path) -> None:
    config = StoreConfig(compact_min_log_bytes=2048)
    with Store.open(store_dir, config) as s:
        s.create_document("d")
        for i in range(300):
            s.batch([Set("d", f"k{i % 10}", f"v{i}".encode())])
            s.incr("d", "n")
        info = s.document_info("d")
        assert info.snapshot_bytes > 0
        assert info.log_bytes <= max(info.snapshot_bytes, 2048) + 200
        assert s.stats()["compactions"] >= 1
        state = s.scan("d").items
    with Store.open(store_dir, config) as s:
        assert s.scan("d").items == state
        assert s.incr("d", "n") == 301
        assert s.get("d", "k9") == b"v299"


def test_explicit_compaction_keeps_a_peer_in_sync(tmp_path: Path) -> None:
    with Store.open(tmp_path / "a") as a, Store.open(tmp_path / "b") as b:
        for s in (a, b):
            s.create_document("d")
        a.batch([Set("d", f"k{i}", b"v") for i in range(50)])
        b.apply_update("d", a.diff("d", b.state_vector("d")))
        a.compact("d")
        assert a.document_info("d").log_entries == 0
        a.set("d", "k0", b"new")
        b.apply_update("d", a.diff("d", b.state_vector("d")))
        assert b.scan("d", limit=1000).items == a.scan("d", limit=1000).items


def test_update_log_stays_bounded_under_endless_overwrites(store_dir: Path) -> None:
    # The log is folded into the snapshot whenever it outgrows it, so it never
    # holds more than about one snapshot's worth of updates. (The snapshot itself
    # keeps Yjs's per-overwrite tombstones; scripts/bench_store.py measures them.)
    config = StoreConfig(durability=Durability.BATCHED, compact_min_log_bytes=4096)
    with Store.open(store_dir, config) as s:
        s.create_document("d")
        worst = 0.0
        for round_ in range(4):
            for i in range(0, 5000, 50):
                s.batch([Set("d", f"k{j}", f"{round_}-{i}".encode()) for j in range(50)])
                info = s.document_info("d")
                worst = max(worst, info.log_bytes / max(info.snapshot_bytes, 4096))
        assert s.stats()["compactions"] >= 4
        assert worst < 1.5, worst  # at most one commit past the threshold
        assert s.scan("d", limit=100).items[0] == ("k0", b"3-4950")


def test_batched_durability_survives_reopen(store_dir: Path) -> None:
    with Store.open(store_dir, StoreConfig(durability=Durability.BATCHED)) as s:
        s.create_document("d")
        s.batch([Set("d", f"k{i}", b"v") for i in range(100)])
    with Store.open(store_dir) as s:
        assert s.document_info("d").keys == 100


def test_second_writer_is_refused_while_first_is_open(store: Store) -> None:
    with pytest.raises(StoreLockedError, match="open for writing by another process"):
        Store.open(store.path)
    code = (
        "from edgestate.store import Store\n"
        "from edgestate.errors import StoreLockedError\n"
        f"try:\n    Store.open({str(store.path)!r})\n"
        "except StoreLockedError:\n    print('locked')"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert out.stdout.strip() == "locked", out.stderr
    store.set("docs", "still", b"works")


def test_lock_is_released_on_close(store_dir: Path) -> None:
    Store.open(store_dir).close()
    Store.open(store_dir).close()


def test_other_format_version_is_refused(store_dir: Path) -> None:
    with Store.open(store_dir) as s:
        s.create_document("d")
        s.set("d", "k", b"v")
    env = lmdb.open(str(store_dir), max_dbs=10)
    with env.begin(write=True) as txn:
        txn.put(b"format", b"999", db=env.open_db(b"meta", txn=txn))
    env.close()
    with pytest.raises(FormatVersionError, match="format 999"):
        Store.open(store_dir)
    with pytest.raises(FormatVersionError):
        Store.open(store_dir, readonly=True)


def test_foreign_lmdb_environment_is_refused(store_dir: Path) -> None:
    env = lmdb.open(str(store_dir), max_dbs=10)
    with env.begin(write=True) as txn:
        txn.put(b"k", b"v", db=env.open_db(b"someone-elses", txn=txn))
    env.close()
    with pytest.raises(FormatVersionError, match="not an edgestate store"):
        Store.open(store_dir)


def test_corrupt_data_file_is_a_clear_error(store_dir: Path) -> None:
    store_dir.mkdir()
    (store_dir / "data.mdb").write_bytes(os.urandom(64 << 10))
    # Refused from its meta pages, before LMDB maps it (StoreCorruptError).
    with pytest.raises(StoreError, match=r"not an LMDB file|meta page 0 is damaged"):
        Store.open(store_dir)


def test_readonly_open_of_missing_store(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no edgestate store"):
        Store.open(tmp_path / "nothing", readonly=True)
