"""A node's data directory made usable, and its secret files: the admin token, the cache key."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from edgestate.errors import ConfigError, DataDirError
from edgestate.files import write_private

TOKEN_FILE = "admin.token"


def prepare_data_dir(data_dir: Path) -> None:
    """Create ``data_dir`` if needed and check that it can be written.

    A directory that cannot be made or written is a :class:`DataDirError` naming
    it and why, before anything else starts.
    """
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except FileExistsError as exc:
        raise DataDirError(f"data directory {data_dir} is a file, not a directory") from exc
    except NotADirectoryError as exc:
        raise DataDirError(
            f"cannot create data directory {data_dir}: a parent of it is a file"
        ) from exc
    except OSError as exc:
        raise DataDirError(
            f"cannot create data directory {data_dir}: {exc.strerror or exc}"
        ) from exc
    if not os.access(data_dir, os.W_OK | os.X_OK):
        raise DataDirError(f"cannot write in data directory {data_dir}: permission denied")


def ensure_token(data_dir: Path) -> str:
    """The admin token, created (mode 0600) at first start."""
    path = data_dir / TOKEN_FILE
    try:
        token = path.read_text().strip()
    except FileNotFoundError:
        pass
    else:
        if len(token) < 16:
            raise ConfigError(
                f"the admin token in {path} is empty or too short to be safe; "
                "delete the file to have a new one made at start"
            )
        return token
    token = secrets.token_urlsafe(32)
    write_private(path, (token + "\n").encode())
    return token


CACHE_KEY_FILE = "cache.key"


def ensure_cache_key(data_dir: Path) -> bytes:
    """The secret of the module cache's HMAC, created (mode 0600) at first start."""
    path = data_dir / CACHE_KEY_FILE
    try:
        key = path.read_bytes()
    except FileNotFoundError:
        key = secrets.token_bytes(32)
        write_private(path, key)
        return key
    if len(key) != 32:
        raise ConfigError(
            f"{path} is not a 32-byte key; delete it to have a new one made (the module "
            "cache is then rebuilt)"
        )
    return key


__all__ = ["CACHE_KEY_FILE", "TOKEN_FILE", "ensure_cache_key", "ensure_token"]
