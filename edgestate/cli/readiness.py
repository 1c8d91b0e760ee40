"""Telling a supervisor that a node is ready: a ready file, DATA/node.json, sd_notify.

Once the API and sync listen, ``edgestate node``:

- writes ``--ready-file PATH`` (atomically: the API URL, sync port, node id, pid),
- records the same in ``DATA/node.json`` (:mod:`edgestate.cli.node_address`),
- sends ``READY=1`` to systemd when ``$NOTIFY_SOCKET`` is set (``Type=notify``),

and on a clean stop sends ``STOPPING=1`` and removes both files. The sd_notify
protocol is one datagram on a unix socket (``sd_notify(3)``); a few lines with
the socket module, no dependency.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from edgestate.cli.node_address import forget, record, write_atomically

log = logging.getLogger("edgestate")


def sd_notify(message: str, environ: dict[str, str] | None = None) -> bool:
    """Send ``message`` to ``$NOTIFY_SOCKET``; False when there is none (not under systemd).

    An address starting with ``@`` is in the abstract namespace. A supervisor
    that cannot be told is logged, not fatal: the node serves either way.
    """
    env = os.environ if environ is None else environ
    address = env.get("NOTIFY_SOCKET")
    if not address:
        return False
    target = "\0" + address[1:] if address.startswith("@") else address
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(target)
            sock.sendall(message.encode())
    except OSError as exc:
        log.warning("cannot notify the supervisor at NOTIFY_SOCKET=%s: %s", address, exc)
        return False
    return True


@contextlib.contextmanager
def announced(data_dir: Path, info: dict[str, Any], ready_file: Path | None) -> Iterator[None]:
    """Announce a ready node for the duration of the block; withdraw it afterwards."""
    pid = os.getpid()
    recorded = record(data_dir, info)
    if ready_file is not None:
        write_atomically(ready_file, info)
    sd_notify(f"READY=1\nMAINPID={pid}\nSTATUS=serving on {info['api']}")
    try:
        yield
    finally:
        sd_notify("STOPPING=1")
        forget(recorded, pid)
        if ready_file is not None:
            forget(ready_file, pid)
