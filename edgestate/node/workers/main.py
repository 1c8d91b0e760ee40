"""Entry point of an invocation worker process (started by the node, never by hand).

Reads its :class:`~edgestate.node.workers.process.WorkerSettings` (pickled) from
stdin, then serves until SIGTERM or until its socket to the node closes.
"""

from __future__ import annotations

import asyncio
import os
import pickle
import sys
from typing import TYPE_CHECKING

from edgestate.node.event_loop import loop_factory
from edgestate.node.logs import setup_logging
from edgestate.node.workers.label import set_worker_label, worker_label

if TYPE_CHECKING:
    from edgestate.node.workers.process import WorkerSettings

# The same GIL setting the node uses (edgestate.cli.node_cmds): the loop hands the
# GIL back promptly to wasmtime's epoch ticker.
SWITCH_INTERVAL_S = float(os.environ.get("EDGESTATE_SWITCH_INTERVAL_S", "0.0002"))


def main() -> None:
    """Run one worker."""
    run(pickle.loads(sys.stdin.buffer.read()))


def run(settings: WorkerSettings) -> None:
    """Configure logging and the GIL, then serve as the worker ``settings`` describe
    (in a fresh interpreter, or in a child the fork server forked)."""
    set_worker_label("spare" if settings.index < 0 else str(settings.index))
    setup_logging(settings.log_format, settings.log_level, process=worker_label)
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    from edgestate.node.workers.worker import Worker

    async def serve() -> None:
        await Worker(settings).serve()

    with asyncio.Runner(loop_factory=loop_factory(settings.api.event_loop)) as runner:
        runner.run(serve())


if __name__ == "__main__":
    main()
