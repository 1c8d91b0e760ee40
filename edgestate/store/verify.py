"""Walking a store to find damage: every table, every entry, decoded.

LMDB trusts its B-tree: a page of random bytes can make it report
``MDB_CORRUPTED``, return garbage, or fail an assertion and abort the process.
So the walk runs in a child process (:func:`verify_in_child`): whatever LMDB does
there, the caller gets a list of problems, and an abort becomes one of them,
naming the table it was reading.

Two depths: ``decode=False`` reads every key and value of every table (it
touches every B-tree and overflow page; a node runs it before serving);
``decode=True`` (``edgestate inspect verify``) also decodes every entry with the
store's own decoders: msgpack records, Yjs v1 snapshots and log entries through
pycrdt, and checks each materialized value against its document.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import lmdb

from edgestate.errors import StoreCorruptError
from edgestate.store.integrity import check_data_file
from edgestate.store.tables import Tables

# Problems listed before the walk stops listing: a wrecked file would otherwise
# print one line per entry.
MAX_PROBLEMS = 100


class _Walk:
    def __init__(self, path: Path, decode: bool) -> None:
        self.path, self.decode = path, decode
        self.problems: list[str] = []
        self.entries = 0

    def problem(self, text: str) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(text)

    def run(self) -> None:
        try:
            check_data_file(self.path)
        except StoreCorruptError as exc:
            self.problem(str(exc))
            return
        env = lmdb.open(str(self.path), readonly=True, max_dbs=len(Tables.names()) + 2, lock=True)
        try:
            self._tables(env)
        except lmdb.Error as exc:
            self.problem(f"LMDB: {exc}")
        finally:
            env.close()

    def _tables(self, env: Any) -> None:
        _progress("main")
        with env.begin() as txn:
            names = {bytes(k) for k, _ in txn.cursor()}
        for foreign in sorted(names - {n.encode() for n in Tables.names()}):
            self.problem(f"unexpected table {foreign!r}")
        rows: dict[str, list[tuple[bytes, bytes]]] = {}
        for name in Tables.names():
            _progress(name)
            if name.encode() not in names:
                self.problem(f"table {name} is missing")
                continue
            table: list[tuple[bytes, bytes]] = []
            # A transaction per table: after MDB_CORRUPTED LMDB refuses to go on
            # with the one it happened in, and the other tables deserve a look.
            try:
                db = env.open_db(name.encode(), create=False)
                with env.begin() as txn:
                    for k, v in txn.cursor(db=db):
                        self.entries += 1
                        if self.decode:
                            table.append((bytes(k), bytes(v)))
            except lmdb.Error as exc:
                self.problem(f"table {name}: LMDB: {exc}")
            rows[name] = table
        if self.decode and self.problems:
            # Decoding half-read tables would only list what the damage hid.
            self.problem("entries not decoded: first restore a store whose tables can be walked")
        elif self.decode:
            _progress("decode")
            from edgestate.store.decode_check import check_rows

            for text in check_rows(rows):
                self.problem(text)


def _progress(table: str) -> None:
    # The parent reads these to say where an abort happened.
    print(json.dumps({"at": table}), flush=True)


def verify_in_child(path: Path, *, decode: bool) -> list[str]:
    """Problems found walking the store at ``path`` in a child process ([] if sound)."""
    package_root = str(Path(__file__).resolve().parents[2])
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            p for p in (package_root, os.environ.get("PYTHONPATH", "")) if p
        ),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "edgestate.store.verify"],
        input=json.dumps({"path": str(path), "decode": decode}).encode(),
        capture_output=True,
        env=env,
        check=False,
    )
    at, result = "start", None
    for line in proc.stdout.decode(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        at = record.get("at", at)
        result = record.get("problems", result)
    if proc.returncode < 0:
        name = signal.Signals(-proc.returncode).name
        return [f"LMDB crashed the reading process ({name}) while reading table {at}"]
    if result is None:
        tail = proc.stderr.decode(errors="replace").strip().splitlines()[-1:]
        return [f"the verifying process failed (exit {proc.returncode}): {' '.join(tail)}"]
    return [str(p) for p in result]


def _child_main() -> None:
    args = json.loads(sys.stdin.read())
    walk = _Walk(Path(args["path"]), bool(args["decode"]))
    walk.run()
    print(json.dumps({"problems": walk.problems, "entries": walk.entries}), flush=True)


if __name__ == "__main__":
    _child_main()
