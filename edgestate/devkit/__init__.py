"""Developer tools: throwaway publishers and signed example bundles, node
processes for tests, and the cluster ``edgestate demo`` runs (``devkit.demo``;
the command itself is ``edgestate.cli.demo_cmd``).

Nothing here is for production use. It sits on top of every other layer.
"""

from edgestate.devkit.bundles import Bundle, Publisher, example_bundle, make_publisher
from edgestate.devkit.process import spawn_node
from edgestate.errors import NodeStartError

__all__ = [
    "Bundle",
    "NodeStartError",
    "Publisher",
    "example_bundle",
    "make_publisher",
    "spawn_node",
]
