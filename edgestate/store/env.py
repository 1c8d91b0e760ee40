"""Opening the data directory's LMDB environment: format check, writer lock, tables."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lmdb
import msgpack

from edgestate.errors import (
    FormatVersionError,
    StoreCorruptError,
    StoreError,
    StoreLockedError,
    StoreMissingError,
)
from edgestate.store.integrity import check_data_file
from edgestate.store.tables import Tables
from edgestate.store.types import Durability, StoreConfig

FORMAT_VERSION = 1
_FORMAT_KEY = b"format"
_REPLICA_KEY = b"replica"
_LOCK_FILE = "writer.lock"
# What LMDB says of pages it cannot trust (MDB_CORRUPTED, MDB_PAGE_NOTFOUND,
# MDB_INVALID, MDB_PANIC).
_DAMAGE = (lmdb.CorruptedError, lmdb.PageNotFoundError, lmdb.InvalidError, lmdb.PanicError)


@dataclass(slots=True)
class DocMeta:
    """Per-document bookkeeping kept in the ``docs`` table.

    ``seq`` is the next log sequence number; log entries below ``snap_seq`` have
    been folded into the snapshot and deleted.
    """

    seq: int = 0
    snap_seq: int = 0
    log_n: int = 0
    log_b: int = 0
    snap_b: int = 0
    keys: int = 0
    value_b: int = 0
    created_ms: int = 0

    def pack(self) -> bytes:
        """msgpack bytes of this record."""
        return bytes(
            msgpack.packb(
                [
                    self.seq,
                    self.snap_seq,
                    self.log_n,
                    self.log_b,
                    self.snap_b,
                    self.keys,
                    self.value_b,
                    self.created_ms,
                ]
            )
        )

    @classmethod
    def unpack(cls, raw: bytes) -> DocMeta:
        """Inverse of :meth:`pack`."""
        return cls(*msgpack.unpackb(raw))


@dataclass
class Environment:
    """An open LMDB environment with edgestate's tables."""

    path: Path
    env: Any
    tables: Tables
    replica_id: int
    readonly: bool
    _lock_fd: int | None = field(default=None, repr=False)

    @contextlib.contextmanager
    def read(self) -> Iterator[Any]:
        """A read transaction that survives another process growing the map."""
        try:
            txn = self.env.begin()
        except lmdb.MapResizedError:
            # Another process grew the map: adopt its size and retry once.
            self.env.set_mapsize(0)
            txn = self.env.begin()
        try:
            yield txn
        finally:
            txn.abort()

    def close(self) -> None:
        """Close LMDB and release the writer lock."""
        self.env.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None


def _take_writer_lock(path: Path) -> int:
    fd = os.open(path / _LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StoreLockedError(
            f"{path} is open for writing by another process (a running node or `edgestate kv`); "
            "stop it, or use `edgestate inspect` (read-only) or the node's API instead"
        ) from None
    return fd


def open_environment(
    path: Path, config: StoreConfig, *, readonly: bool, create: bool = True
) -> Environment:
    """Open the environment under ``path``, creating it if writable, ``create`` and
    absent (or an empty ``data.mdb``); otherwise a missing store is
    :class:`StoreMissingError` and a damaged file :class:`StoreCorruptError`."""
    path = Path(path)
    data_file = path / "data.mdb"
    if path.exists() and not path.is_dir():
        raise StoreError(f"{path} is not a directory")
    missing = not data_file.exists() or data_file.stat().st_size == 0
    if missing and (readonly or not create):
        state = "has no data.mdb" if not data_file.exists() else "has an empty (0-byte) data.mdb"
        raise StoreMissingError(f"no edgestate store at {path}: it {state}")
    if not missing:
        # Before LMDB maps it: a truncated file would be a SIGBUS on first read.
        check_data_file(path)
    lock_fd: int | None = None
    if not readonly:
        path.mkdir(parents=True, exist_ok=True)
        lock_fd = _take_writer_lock(path)
    try:
        env = lmdb.open(
            str(path),
            map_size=config.map_size,
            max_dbs=len(Tables.names()) + 2,
            subdir=True,
            readonly=readonly,
            # SYNC: every commit is fsynced before it returns, so an acknowledged
            # write survives power loss. BATCHED: the store fsyncs on a timer.
            sync=config.durability is Durability.SYNC,
            metasync=config.durability is Durability.SYNC,
            max_readers=512,
            lock=True,
        )
    except lmdb.Error as exc:
        if lock_fd is not None:
            os.close(lock_fd)
        raise StoreError(f"cannot open the LMDB environment at {path}: {exc}") from exc
    try:
        tables, replica = _check_format(env, path, readonly)
    except BaseException:
        env.close()
        if lock_fd is not None:
            os.close(lock_fd)
        raise
    return Environment(path, env, tables, replica, readonly, lock_fd)


def _check_format(env: Any, path: Path, readonly: bool) -> tuple[Tables, int]:
    try:
        if readonly:
            tables = Tables.open(env, create=False)
        else:
            with env.begin(write=True) as txn:
                main = txn.cursor()
                existing = {bytes(k) for k, _ in main}
                foreign = existing - {n.encode() for n in Tables.names()}
                if foreign:
                    raise FormatVersionError(
                        f"{path} holds an LMDB environment that is not an edgestate store "
                        f"(unexpected tables {sorted(foreign)!r})"
                    )
                tables = Tables.open(env, txn, create=True)
                if txn.get(_FORMAT_KEY, db=tables.meta) is None:
                    if existing:
                        raise FormatVersionError(
                            f"{path} has edgestate tables but no format record"
                        )
                    txn.put(_FORMAT_KEY, str(FORMAT_VERSION).encode(), db=tables.meta)
                    # 52 bits: unique across a fleet, and exact as a JavaScript number
                    # (it doubles as the Yjs client id that JS peers decode). Imported
                    # here: only a new store needs it (~6 ms, hashlib and random).
                    import secrets

                    replica = secrets.randbits(52) | 1
                    txn.put(_REPLICA_KEY, str(replica).encode(), db=tables.meta)
    except lmdb.NotFoundError as exc:
        raise FormatVersionError(f"{path} is not an edgestate store: {exc}") from exc
    except _DAMAGE as exc:
        # Damage past the meta pages (check_data_file) shows first here, when the
        # main table's B-tree pages are read: the same named refusal.
        raise StoreCorruptError(f"{path} is damaged: {exc}; restore it from a backup") from exc
    except lmdb.Error as exc:
        raise StoreError(f"cannot read the LMDB environment at {path}: {exc}") from exc
    with env.begin() as txn:
        raw_format = txn.get(_FORMAT_KEY, db=tables.meta)
        raw_replica = txn.get(_REPLICA_KEY, db=tables.meta)
    if raw_format != str(FORMAT_VERSION).encode():
        found = raw_format.decode(errors="replace") if raw_format else "none"
        raise FormatVersionError(
            f"{path} was written in on-disk format {found}; this edgestate reads format "
            f"{FORMAT_VERSION}"
        )
    if raw_replica is None:
        raise FormatVersionError(f"{path} has no replica id record")
    return tables, int(raw_replica)
