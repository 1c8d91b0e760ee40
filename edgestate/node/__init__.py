"""The node service: one process wiring store, runtime, module registry, sync
and the HTTP API (``service``), with its config, routes, registry and metrics.

    from edgestate.node import Node
    from edgestate.node.config import load_config
    async with Node(load_config(path)) as node:
        await node.wait_closed()

``Node`` is imported on first use, so ``edgestate.node.config`` (which the CLI
reads for every command) does not pull in aiohttp, wasmtime and the sync daemon.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edgestate.node.service import Node

__all__ = ["Node"]


def __getattr__(name: str) -> Any:
    if name == "Node":
        from edgestate.node.service import Node

        return Node
    raise AttributeError(f"module 'edgestate.node' has no attribute {name!r}")
