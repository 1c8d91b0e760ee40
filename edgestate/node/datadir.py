"""What a directory must be before a node makes it its data directory.

A node writes its token, cache key, module cache and store into ``--data``. It
refuses a directory that is not its own, and a directory of its own whose store
is gone: starting there would make an empty node of one that held data.

- missing or empty: a first start, everything is created;
- holding only what an operator prepares before a first start (the trust
  policy, TLS material, a config file, log files): also a first start;
- holding any of a node's own files (``admin.token``, ``cache.key``,
  ``module-cache/``, ``store/``): the node's; its store must be there, unless
  the start says ``--new-store``;
- anything else (a checkout, a home directory): :class:`ForeignDataDirError`.
"""

from __future__ import annotations

import logging
from pathlib import Path

from edgestate.errors import ConfigError, ForeignDataDirError, StoreMissingError
from edgestate.node.config import STORE_SUBDIR

log = logging.getLogger(__name__)

# What a node writes into its data directory (service.py, runtime cache, store).
OWN_ENTRIES = frozenset({"admin.token", "cache.key", "module-cache", STORE_SUBDIR})
# What an operator may put there before the first start.
PREPARED_ENTRIES = frozenset({"trust-policy.json", "tls", "node.toml"})
PREPARED_SUFFIXES = (".log",)  # `edgestate node --data d > d/node.log` creates it first
_SHOWN = 5  # foreign entries named in the error


def check_data_dir(data_dir: Path, *, new_store: bool) -> bool:
    """Check ``data_dir`` (see the module docstring); whether its store may be created."""
    if data_dir.exists() and not data_dir.is_dir():
        raise ConfigError(f"data directory {data_dir} is not a directory")
    entries = {p.name for p in data_dir.iterdir()} if data_dir.exists() else set()
    if not entries & OWN_ENTRIES:
        foreign = sorted(
            e for e in entries if e not in PREPARED_ENTRIES and not e.endswith(PREPARED_SUFFIXES)
        )
        if foreign:
            shown = ", ".join(foreign[:_SHOWN]) + (", ..." if len(foreign) > _SHOWN else "")
            raise ForeignDataDirError(
                f"{data_dir} is not empty and not an edgestate data directory (it holds "
                f"{shown}); give a new or empty directory, or one a node made"
            )
        return True
    data_file = data_dir / STORE_SUBDIR / "data.mdb"
    if data_file.exists() and data_file.stat().st_size > 0:
        return False
    if new_store:
        log.warning(
            "%s: starting with a new, empty store as asked (--new-store); this node gets "
            "a new replica id and holds none of the data its old store had",
            data_dir,
        )
        return True
    state = "is missing" if not data_file.exists() else "is empty (0 bytes)"
    raise StoreMissingError(
        f"{data_dir} is a node's data directory ({', '.join(sorted(entries & OWN_ENTRIES))}) "
        f"but its store {data_file} {state}: its data would be lost. Restore the store "
        "from a backup (README, backup and restore), or start with `edgestate node "
        "--new-store` to begin afresh with an empty one"
    )
