"""Errors of the client and developer tools: talking to a node, starting one, worker links.

Part of the tree in ``edgestate.errors`` (its docstring); import from there."""

from __future__ import annotations

from edgestate.errors.base import EdgestateError


class ClientError(EdgestateError):
    """A failure talking to a running node's HTTP API."""

    code = "client_error"


class NodeAPIError(ClientError):
    """The node answered with an error (its code and message are kept)."""

    code = "api_error"

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{message} (HTTP {status})")
        self.status = status
        self.code = code


class NodeUnreachableError(ClientError):
    """No node answered at the URL."""

    code = "unreachable"


class NodeStartError(EdgestateError):
    """A node process exited or did not become ready; carries its log."""

    code = "node_start_failed"


class WorkerLinkError(EdgestateError):
    """An invocation worker lost its socket to the node (the node is closing or gone).

    The invocation's writes were not acknowledged: they may or may not have
    committed, as with any write whose answer never came.
    """

    code = "node_link_lost"


class NodeUnresponsiveError(WorkerLinkError):
    """An invocation worker's link to the node is up but the node's heartbeat is late.

    The node's event loop is stalled or the process is stopped: a worker's
    ``/healthz`` answers 503 with this code rather than vouching for a node it
    has not heard from.
    """

    code = "node_unresponsive"


class HandoffError(WorkerLinkError):
    """A worker could not hand a ``/yjs`` connection to the node (its handoff
    socket refused, or the request is too big to send): nothing left the
    worker, which relays the connection instead (edgestate/node/workers/handoff.py).
    """

    code = "yjs_handoff_failed"
