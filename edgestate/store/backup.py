"""A consistent hot backup of a store: LMDB's compacting copy.

The copy runs inside one read transaction, so it is a consistent snapshot of the
last commit even while a node keeps writing (LMDB's MVCC never blocks the
writer), and compaction leaves out free pages, so the copy is as small as the
live data. Restore: stop the node, replace ``DATA/store`` with the backup
directory, start it (README, backup and restore).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import lmdb

from edgestate.errors import StoreError
from edgestate.store.integrity import DATA_FILE, check_data_file
from edgestate.store.tables import Tables


def backup_store(source: Path, dest: Path) -> int:
    """Copy the store at ``source`` into the new directory ``dest``; its size in bytes.

    ``dest`` must not exist or be empty. The copy is written beside it and renamed
    into place only once complete and checked, so a failed backup leaves nothing
    that looks like one.
    """
    source, dest = Path(source), Path(dest)
    if not (source / DATA_FILE).exists():
        raise StoreError(f"no edgestate store at {source} (no {DATA_FILE})")
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise StoreError(f"backup destination {dest} exists and is not an empty directory")
    check_data_file(source)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        env = lmdb.open(str(source), readonly=True, max_dbs=len(Tables.names()) + 2)
        try:
            env.copy(str(tmp), compact=True)
        finally:
            env.close()
        with (tmp / DATA_FILE).open("rb") as f:
            os.fsync(f.fileno())
        check_data_file(tmp)
        if dest.exists():
            dest.rmdir()
        tmp.rename(dest)
    except lmdb.Error as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise StoreError(f"backup of {source} failed: {exc}") from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return (dest / DATA_FILE).stat().st_size
