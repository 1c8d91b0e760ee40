"""A node's secret files in its data directory: the admin token, the cache key."""

from __future__ import annotations

import secrets
from pathlib import Path

from edgestate.errors import ConfigError
from edgestate.files import write_private

TOKEN_FILE = "admin.token"


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
