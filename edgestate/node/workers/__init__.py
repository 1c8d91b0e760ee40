"""Invocation workers: N processes that serve invocations beside the node.

The node keeps what must be one (the store writer, sync, admin, metrics); each
worker runs modules with its own runtime and a read-only store, and sends each
invocation's writes to the node's writer over a local socket. ``supervisor`` is
the node's side, ``worker`` and ``proxy`` the worker's, ``protocol`` the socket
between them (spec: ``schemas/worker-protocol.md``). README: the process model.
"""

from edgestate.node.workers.process import WorkerSettings
from edgestate.node.workers.supervisor import WorkerPool

__all__ = ["WorkerPool", "WorkerSettings"]
