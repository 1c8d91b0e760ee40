"""The event loop ``api.event_loop`` names, for the node process and its workers.

uvloop is not a dependency (``pip install 'edgestate[uvloop]'``): used when it is
installed and asked for ("auto", the default, or "uvloop"). On the node process it
cut a Yjs update's relay through two nodes the most of anything tried
(docs/yjs.md); on a worker, CPU per invocation by 8-14 % (docs/workers.md).
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from collections.abc import Callable

__all__ = ["EVENT_LOOPS", "loop_factory"]

EVENT_LOOPS = ("auto", "asyncio", "uvloop")

log = logging.getLogger("edgestate.node")


def loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop factory for "uvloop", and for "auto" when it is importable;
    else None (asyncio's own loop). A missing uvloop that was asked for by name is
    logged, not fatal: the node serves the same on asyncio's loop, only slower."""
    if name not in ("auto", "uvloop"):
        return None
    try:
        uvloop = importlib.import_module("uvloop")
    except ImportError:
        if name == "uvloop":
            log.warning(
                "api.event_loop = 'uvloop' but uvloop is not installed: using asyncio's loop"
            )
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory
