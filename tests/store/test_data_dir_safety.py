"""A node's data directory is checked before anything is served or written: a lost
store, a damaged store and a directory that is not ours are refused by name, with
real node processes, real LMDB files and real damage (deleted, truncated,
overwritten with random bytes)."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import lmdb
import pytest

from edgestate.store import Set, Store
from tests.node.conftest import NodeProcess, start_node
from tests.schemas import validate

pytestmark = pytest.mark.timeout(120)

NODE_ARGS = ["--api-port", "0", "--sync-port", "0", "--no-mdns", "--workers", "0"]
KEYS = 2000


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``edgestate ARGS`` as a process (a SIGBUS or abort shows as a negative code)."""
    return subprocess.run(
        [sys.executable, "-m", "edgestate.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def node_start(data: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """A node start expected to be refused: it must exit by itself."""
    return cli("node", "--data", str(data), *NODE_ARGS, *extra)


def refused(result: subprocess.CompletedProcess[str], code: str) -> None:
    assert result.returncode == 1, (result.returncode, result.stderr[-2000:])
    assert f"error: {code}: " in result.stderr, result.stderr[-2000:]
    assert "Traceback" not in result.stderr


@pytest.fixture
def node_data(tmp_path: Path) -> Path:
    """A node's data directory holding KEYS acknowledged writes, node stopped."""
    data = tmp_path / "data"
    node = start_node(data, "--no-mdns")
    try:
        for start in range(0, KEYS, 500):
            ops = [Set("app", f"key-{i:06d}", b"v%06d" % i * 8) for i in range(start, start + 500)]
            node.client.batch("app", ops, create=True)
    finally:
        assert node.stop() == 0
    return data


PAGE = 4096  # LMDB's page size on this platform (inspect stats: page_size)


def _offsets(raw: bytes, needle: bytes) -> list[int]:
    found, at = [], raw.find(needle)
    while at != -1:
        found.append(at)
        at = raw.find(needle, at + 1)
    return found


def _keys(data: Path) -> int:
    with Store.open(data / "store", readonly=True) as store:
        return store.document_info("app").keys


# --- item 1: a missing or empty store -------------------------------------------


@pytest.mark.parametrize("damage", ["deleted", "emptied"])
def test_a_node_whose_store_is_gone_refuses_to_start_empty(node_data: Path, damage: str) -> None:
    data_file = node_data / "store" / "data.mdb"
    if damage == "deleted":
        data_file.unlink()
    else:
        data_file.write_bytes(b"")
    result = node_start(node_data)
    refused(result, "store_missing")
    assert "--new-store" in result.stderr
    # Nothing was made in its place, and a local write does not make one either.
    assert not data_file.exists() or data_file.stat().st_size == 0
    assert not (node_data / "data.mdb").exists()
    put = cli("kv", "--data", str(node_data), "put", "app", "k", "v")
    refused(put, "store_missing")
    assert not (node_data / "data.mdb").exists()
    assert not data_file.exists() or data_file.stat().st_size == 0


def test_starting_afresh_is_an_explicit_act(node_data: Path, tmp_path: Path) -> None:
    (node_data / "store" / "data.mdb").unlink()
    node = start_node(node_data, "--no-mdns", "--new-store")
    try:
        assert "app" not in {d["name"] for d in node.client.documents()}
        assert "new, empty store as asked" in node.log()
    finally:
        node.stop()
    # Once there, the new store is simply the node's store.
    again = start_node(node_data, "--no-mdns")
    again.stop()


# --- item 3: a directory that is not ours --------------------------------------


def test_a_directory_that_is_not_ours_is_not_adopted(tmp_path: Path) -> None:
    checkout = tmp_path / "checkout"
    (checkout / ".git").mkdir(parents=True)
    (checkout / "README.md").write_text("a project\n")
    before = sorted(p.name for p in checkout.iterdir())
    result = node_start(checkout)
    refused(result, "foreign_data_dir")
    assert ".git" in result.stderr and "README.md" in result.stderr
    assert sorted(p.name for p in checkout.iterdir()) == before


def test_a_directory_prepared_for_a_first_start_is_ours(tmp_path: Path) -> None:
    data = tmp_path / "prepared"
    data.mkdir()
    (data / "trust-policy.json").write_text('{"version": 1, "publishers": []}')
    node: NodeProcess = start_node(data, "--no-mdns")  # it logs to data/node.log
    node.stop()
    assert (data / "store" / "data.mdb").exists() and (data / "admin.token").exists()


# --- item 2: a corrupt store ----------------------------------------------------


def test_a_truncated_store_is_refused_by_name_not_a_sigbus(node_data: Path) -> None:
    data_file = node_data / "store" / "data.mdb"
    size = data_file.stat().st_size
    os.truncate(data_file, size // 2)
    refused(node_start(node_data), "store_corrupt")
    stats = cli("inspect", "--data", str(node_data), "stats")
    refused(stats, "store_corrupt")
    assert "truncated" in stats.stderr
    verify = cli("inspect", "--data", str(node_data), "verify")
    refused(verify, "store_corrupt")


def test_random_bytes_mid_file_are_found_and_refused(node_data: Path) -> None:
    data_file = node_data / "store" / "data.mdb"
    # Over the pages that hold the document's keys, not at the middle of the file:
    # the file also holds free pages (LMDB copies on write, and system documents
    # such as the node book's heartbeats come and go), and bytes there damage
    # nothing. Stale copies are hit too; the live pages surely are.
    raw = data_file.read_bytes()
    pages = sorted({at // PAGE for at in _offsets(raw, b"key-0")})
    assert len(pages) > 16, "the app document's pages were not found"
    noise = random.Random(7)
    with data_file.open("r+b") as f:
        for page in pages:
            f.seek(page * PAGE)
            f.write(noise.randbytes(PAGE))
    verify = cli("inspect", "--data", str(node_data), "verify")
    refused(verify, "store_corrupt")
    # What LMDB could not read, and why: a table it could not walk (listed on
    # stdout), or the main table itself when opening the store.
    assert "LMDB: " in verify.stdout or "MDB_" in verify.stderr, verify.stdout + verify.stderr
    refused(node_start(node_data), "store_corrupt")


def test_verify_decodes_every_entry(node_data: Path) -> None:
    ok = cli("inspect", "--data", str(node_data), "verify", "--json")
    assert ok.returncode == 0 and '"ok": true' in ok.stdout, ok.stdout + ok.stderr
    validate("cli/inspect-verify.schema.json", json.loads(ok.stdout))
    # A snapshot that LMDB stores fine but that is not a Yjs update, and a
    # materialized value that disagrees with its document.
    env = lmdb.open(str(node_data / "store"), max_dbs=8)
    with env.begin(write=True) as txn:
        txn.put(b"app", b"\x01\x02garbage", db=env.open_db(b"snap", txn=txn))
    env.close()
    bad = cli("inspect", "--data", str(node_data), "verify", "--json")
    assert bad.returncode == 1, bad.stderr
    report = json.loads(bad.stdout)
    validate("cli/inspect-verify.schema.json", report)
    assert not report["ok"]
    assert any("snapshot of 'app' does not decode" in p for p in report["problems"])


def test_hot_backup_is_consistent_and_restores(node_data: Path, tmp_path: Path) -> None:
    node = start_node(node_data, "--no-mdns")
    backup = tmp_path / "backup"
    try:
        # A write in flight while the copy runs: the copy holds a whole commit.
        node.client.put("app", "during", b"x", create=False)
        result = cli("backup", str(backup), "--data", str(node_data))
        assert result.returncode == 0, result.stderr
        node.client.put("app", "after", b"y", create=False)
        again = cli("backup", str(backup), "--data", str(node_data))
        refused(again, "store_error")  # a backup never overwrites another
    finally:
        node.stop()
    assert cli("inspect", "--data", str(backup), "verify").returncode == 0
    # Restore as the README says: stop the node, replace DATA/store, start.
    (node_data / "store" / "data.mdb").unlink()
    (node_data / "store" / "data.mdb").write_bytes((backup / "data.mdb").read_bytes())
    restored = start_node(node_data, "--no-mdns")
    try:
        assert restored.client.get("app", "during")["found"]
        assert not restored.client.get("app", "after")["found"]
        assert _keys(node_data) == KEYS + 1
    finally:
        restored.stop()
