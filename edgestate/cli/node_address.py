"""Where a running node can be reached, recorded in its data directory.

``edgestate node`` writes ``DATA/node.json`` (the API URL, sync port, node id and
pid; the ready file's content) once it listens, and removes it on a clean stop,
so ``kv``, ``inspect``, ``token`` and the admin commands can find a node and its
token from nothing but ``--data DIR``. A node killed with -9 leaves the file
behind: a reader checks that the recorded pid is still alive before trusting it.

Stdlib only: the CLI imports this for every command that takes ``--data``.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

NODE_FILE = "node.json"


def write_atomically(path: Path, info: dict[str, Any]) -> None:
    """Write ``info`` as JSON to ``path`` so that a reader sees all of it or nothing."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(info) + "\n")
    tmp.replace(path)


def record(data_dir: Path, info: dict[str, Any]) -> Path:
    """Record a running node's address in its data directory; returns the file."""
    path = data_dir / NODE_FILE
    write_atomically(path, info)
    return path


def forget(path: Path, pid: int) -> None:
    """Remove a record this process wrote (not one a newer node wrote over it)."""
    info = read(path)
    if info is not None and info.get("pid") == pid:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def read(path: Path) -> dict[str, Any] | None:
    """A record's content, or None if there is none or it cannot be read."""
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def running_node(data_dir: Path) -> dict[str, Any] | None:
    """The record of the node running on ``data_dir`` now, or None if none is."""
    info = read(data_dir / NODE_FILE)
    if info is None or not isinstance(info.get("api"), str):
        return None
    pid = info.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None  # left behind by a node that did not stop cleanly
    except PermissionError:
        pass  # alive, but another user's
    return info
