"""Checking ``data.mdb`` against its own meta pages before LMDB maps it.

LMDB maps the file and trusts it: a file shorter than its last committed page
makes the first read of that page a SIGBUS (the process dies without a word).
The two meta pages at the start say how long the file must be, so a truncated
or overwritten header is refused here with :class:`StoreCorruptError` instead.

Layout (LMDB 0.9, 64-bit): each meta page is a 16-byte page header, then
``mm_magic`` (u32), ``mm_version`` (u32), ``mm_address`` (ptr), ``mm_mapsize``
(size_t), two ``MDB_db`` records of 48 bytes (the free list's ``md_pad`` holds
the page size), ``mm_last_pg`` and ``mm_txnid`` (u64 each).
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

from edgestate.errors import StoreCorruptError

DATA_FILE = "data.mdb"
LMDB_MAGIC = 0xBEEFC0DE
LMDB_DATA_VERSION = 1
_HEADER = 16  # page header: pgno u64, pad u16, flags u16, lower/upper u16 x2
_P_META = 0x08
_PAGE_HEAD = struct.Struct("<QHH")
_MAGIC_VERSION = struct.Struct("<II")
_PSIZE_AT = _HEADER + 24  # mm_dbs[FREE_DBI].md_pad
_LAST_PG_AT = _HEADER + 24 + 2 * 48
_LAST_TXN = struct.Struct("<QQ")
# LMDB page sizes are powers of two from 512 bytes to 64 KiB (the OS page size).
_PAGE_SIZES = frozenset(1 << n for n in range(9, 17))


@dataclass(frozen=True, slots=True)
class MetaPage:
    """What one meta page of ``data.mdb`` says."""

    page_size: int
    last_page: int
    txn_id: int


def _meta(raw: bytes, index: int, page_size: int, path: Path) -> MetaPage:
    page = raw[index * page_size : index * page_size + _LAST_PG_AT + _LAST_TXN.size]
    if len(page) < _LAST_PG_AT + _LAST_TXN.size:
        raise StoreCorruptError(f"{path} is truncated inside meta page {index}")
    pgno, _pad, flags = _PAGE_HEAD.unpack_from(page, 0)
    magic, version = _MAGIC_VERSION.unpack_from(page, _HEADER)
    if pgno != index or not flags & _P_META or magic != LMDB_MAGIC:
        raise StoreCorruptError(
            f"{path}: meta page {index} is damaged (page number {pgno}, flags {flags:#x}, "
            f"magic {magic:#x}; an LMDB file has {LMDB_MAGIC:#x})"
        )
    if version != LMDB_DATA_VERSION:
        raise StoreCorruptError(
            f"{path}: meta page {index} has LMDB data version {version}, not {LMDB_DATA_VERSION}"
        )
    last_page, txn_id = _LAST_TXN.unpack_from(page, _LAST_PG_AT)
    return MetaPage(page_size, last_page, txn_id)


def check_data_file(directory: Path) -> MetaPage:
    """Check ``directory/data.mdb`` against its meta pages; the newer meta page.

    Raises :class:`StoreCorruptError` naming what is wrong: not an LMDB file, a
    damaged meta page, or a file shorter than the pages its last commit uses.
    """
    path = Path(directory) / DATA_FILE
    with path.open("rb") as f:
        head = f.read(2 * max(_PAGE_SIZES))
        # The size after the meta pages, never before: a writer in another process
        # writes a commit's pages (growing the file) before its meta page, so the
        # file is at least as long as any meta page read says. Read the other way
        # round, a commit landing in between looked like a truncated file (found
        # in CI: a spare worker opening the store while the node wrote).
        size = os.fstat(f.fileno()).st_size
    if len(head) < _PSIZE_AT + 4:
        raise StoreCorruptError(f"{path} is {size} bytes: too short to be an LMDB file")
    (page_size,) = struct.unpack_from("<I", head, _PSIZE_AT)
    if page_size not in _PAGE_SIZES:
        raise StoreCorruptError(
            f"{path}: meta page 0 is damaged or this is not an LMDB file "
            f"(page size field {page_size})"
        )
    metas = [_meta(head, i, page_size, path) for i in (0, 1)]
    # LMDB uses the meta page of the newer transaction; both must be sound.
    newest = max(metas, key=lambda m: m.txn_id)
    need = (newest.last_page + 1) * page_size
    if size < need:
        raise StoreCorruptError(
            f"{path} is truncated: {size} bytes, but its last commit (transaction "
            f"{newest.txn_id}) uses {newest.last_page + 1} pages of {page_size} bytes "
            f"({need} bytes); restore it from a backup (see README, backup and restore)"
        )
    return newest
