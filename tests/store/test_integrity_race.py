"""check_data_file against a writer committing while it looks (edgestate.store.integrity).

Real LMDB files. The commit is made to land between the check opening the file
and reading its meta pages, the window in which, when the size was read first, a
commit that grew the file looked like a truncated file (a spare worker failed to
open its node's store in CI).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lmdb
import pytest

from edgestate.errors import StoreCorruptError
from edgestate.store.integrity import DATA_FILE, check_data_file


def test_a_commit_that_grows_the_file_mid_check_is_not_a_truncation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = lmdb.open(str(tmp_path), map_size=1 << 30)
    with env.begin(write=True) as txn:
        txn.put(b"first", b"x")
    before = (tmp_path / DATA_FILE).stat().st_size
    real_open = Path.open
    committed = []

    def open_then_commit(self: Path, *args: Any, **kwargs: Any) -> Any:
        handle = real_open(self, *args, **kwargs)
        if self.name == DATA_FILE and not committed:
            # Another process's writer, as seen from here: a commit that grows
            # the file, after the check began and before it reads the meta pages.
            with env.begin(write=True) as txn:
                for i in range(200):
                    txn.put(f"k{i}".encode(), b"v" * 2000)
            committed.append(True)
        return handle

    monkeypatch.setattr(Path, "open", open_then_commit)
    newest = check_data_file(tmp_path)
    assert committed and (tmp_path / DATA_FILE).stat().st_size > before
    assert (newest.last_page + 1) * newest.page_size <= (tmp_path / DATA_FILE).stat().st_size
    env.close()


def test_a_file_really_cut_short_is_still_refused(tmp_path: Path) -> None:
    env = lmdb.open(str(tmp_path), map_size=1 << 30)
    with env.begin(write=True) as txn:
        for i in range(200):
            txn.put(f"k{i}".encode(), b"v" * 2000)
    env.close()
    data = tmp_path / DATA_FILE
    with data.open("r+b") as f:
        f.truncate(data.stat().st_size // 2)
    with pytest.raises(StoreCorruptError, match="is truncated"):
        check_data_file(tmp_path)
