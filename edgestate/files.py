"""Private files: keys, tokens and secrets, readable by their owner only.

The lowest layer beside ``errors``: the store, runtime, sync and node all write
such files, and each write goes through here.
"""

from __future__ import annotations

import os
from pathlib import Path


def write_private(path: Path, data: bytes, *, replace: bool = False) -> None:
    """Write ``data`` to ``path`` created with mode 0600 from the start.

    A chmod after writing would leave a window in which others can read the
    secret. Without ``replace`` an existing file is never overwritten
    (``FileExistsError``): a key or token once made stays the one in use.
    """
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if replace else os.O_EXCL)
    fd = os.open(path, flags, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
