"""The API port's listening sockets when invocation workers serve it.

With ``api.reuse_port`` (the default, on Linux) the node binds one socket per
worker index to the same address with ``SO_REUSEPORT``: the kernel hashes each
new connection to one of them, so keep-alive clients spread evenly over the
workers. With one shared socket every worker waits in ``accept`` on the same
queue and the one the scheduler wakes first takes the connection: measured at 8
keep-alive clients and 2 workers, nearly all landed on one worker.

The sockets belong to the node and outlive every worker: a connection the kernel
queued on a dead worker's socket waits there until its replacement (the spare,
tens of ms) accepts it, instead of being reset (docs/workers.md).
"""

from __future__ import annotations

import logging
import socket
from typing import TYPE_CHECKING

from edgestate.errors import ListenError

if TYPE_CHECKING:
    from edgestate.node.config import ApiConfig

log = logging.getLogger(__name__)

# Each socket's accept queue: a burst of new connections while its worker is busy
# or being replaced waits rather than being refused.
BACKLOG = 1024
# The spare is handed every listener (it learns its index only when it takes a
# dead worker's place) in one SCM_RIGHTS message, which carries at most 253 fds.
MAX_REUSEPORT_WORKERS = 128


def reuse_port_available() -> bool:
    """Whether this platform has ``SO_REUSEPORT`` with load balancing (Linux)."""
    return hasattr(socket, "SO_REUSEPORT") and socket.SO_REUSEPORT > 0


def listeners(api: ApiConfig, workers: int) -> list[socket.socket]:
    """Bound, listening, non-blocking sockets for ``api.host:api.port``: one per
    worker with ``api.reuse_port`` (where possible), else one shared by all.

    The first socket decides the port (``api.port = 0``: any free one); the others
    join it. A failure closes what was opened and raises :class:`ListenError`.
    """
    count = 1
    if api.reuse_port and workers > 1:
        if not reuse_port_available():
            log.warning("api.reuse_port: SO_REUSEPORT is not available; one shared queue")
        elif workers > MAX_REUSEPORT_WORKERS:
            log.warning(
                "api.reuse_port: over %d workers, one shared accept queue",
                MAX_REUSEPORT_WORKERS,
            )
        else:
            count = workers
    family, kind, proto, _, address = socket.getaddrinfo(
        api.host, api.port, type=socket.SOCK_STREAM
    )[0]
    opened: list[socket.socket] = []
    try:
        if count > 1 and api.port != 0:
            # SO_REUSEPORT would let this node join another's port (a second node
            # started on it by mistake) instead of failing: claim it plainly first.
            with socket.socket(family, kind, proto) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                probe.bind(address)
        for _ in range(count):
            sock = socket.socket(family, kind, proto)
            opened.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if count > 1:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind(address)
            # The others join the port the first one got (it may have asked for 0).
            address = sock.getsockname()
            sock.listen(BACKLOG)
            sock.setblocking(False)
    except OSError as exc:
        for sock in opened:
            sock.close()
        raise ListenError.from_os_error("API", api.host, api.port, exc) from exc
    return opened
