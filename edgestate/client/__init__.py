"""A small synchronous client of a running node's HTTP API (the CLI and scripts)."""

from edgestate.client.node_client import NodeClient, tls_context
from edgestate.errors import NodeAPIError, NodeUnreachableError

__all__ = ["NodeAPIError", "NodeClient", "NodeUnreachableError", "tls_context"]
