"""Entry point of an invocation worker process (started by the node, never by hand).

Reads its :class:`~edgestate.node.workers.supervisor.WorkerSettings` (pickled) from
stdin, then serves until SIGTERM or until its socket to the node closes.
"""

from __future__ import annotations

import asyncio
import pickle
import sys

from edgestate.node.logs import setup_logging

# The same GIL setting the node uses (edgestate.cli.node_cmds): the loop hands the
# GIL back promptly to wasmtime's epoch ticker.
SWITCH_INTERVAL_S = 0.0002


def main() -> None:
    """Run one worker."""
    settings = pickle.loads(sys.stdin.buffer.read())
    setup_logging(settings.log_format, settings.log_level, process=f"worker-{settings.index}")
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    from edgestate.node.workers.worker import Worker

    async def run() -> None:
        await Worker(settings).serve()

    asyncio.run(run())


if __name__ == "__main__":
    main()
