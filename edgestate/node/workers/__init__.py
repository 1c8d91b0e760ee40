"""Invocation workers: N processes that serve invocations beside the node.

The node keeps what must be one (the store writer, sync, admin, metrics); each
worker runs modules with its own runtime and a read-only store, and sends each
invocation's writes to the node's writer over a local socket. ``supervisor`` is
the node's side, ``worker`` and ``proxy`` the worker's, ``protocol`` the socket
between them; ``handoff`` (worker) and ``adopt`` (node) pass ``/yjs``
connections to the node whole (spec: ``schemas/worker-protocol.md``). README: the process model.
"""

from edgestate.node.workers.adopt import Adopter
from edgestate.node.workers.handoff import handoff_path
from edgestate.node.workers.process import WorkerSettings
from edgestate.node.workers.supervisor import WorkerPool

__all__ = ["Adopter", "WorkerPool", "WorkerSettings", "handoff_path"]
