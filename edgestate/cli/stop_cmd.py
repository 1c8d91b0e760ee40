"""``edgestate stop --data DIR``: stop the node running on a data directory, gracefully.

The node is the one recorded in ``DIR/node.json`` (:mod:`edgestate.cli.node_address`);
it gets SIGTERM (drain in-flight invocations, close peers, flush) and the command
waits until it has exited, so a script can go on knowing it is gone.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import click

from edgestate.cli.options import DATA_ENV
from edgestate.cli.output import edge_errors

# api.shutdown_grace_s (10 s) for in-flight invocations, plus closing the store.
DEFAULT_WAIT_S = 30


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True  # not Linux: no zombie check
    return state != "Z"


@click.command("stop")
@click.option(
    "--data",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("edgestate-data"),
    envvar=DATA_ENV,
    show_default=True,
    help=f"The node's data directory [${DATA_ENV}].",
)
@click.option(
    "--wait",
    type=click.IntRange(0, 3600),
    default=DEFAULT_WAIT_S,
    show_default=True,
    help="Seconds to wait for it to exit (0: do not wait).",
)
@edge_errors
def stop(data: Path, wait: int) -> None:
    """Stop the node running on --data (SIGTERM) and wait until it has exited."""
    from edgestate.cli.node_address import NODE_FILE, running_node
    from edgestate.errors import NodeUnreachableError

    info = running_node(data)
    if info is None:
        raise NodeUnreachableError(
            f"no node is running on {data} (no {data / NODE_FILE} of a live node)"
        )
    pid = int(info["pid"])
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + wait
    while wait and _alive(pid):
        if time.monotonic() > deadline:
            raise NodeUnreachableError(
                f"the node on {data} (pid {pid}) did not exit within {wait} s; "
                f"`kill -9 {pid}` ends it at once (acknowledged writes survive)"
            )
        time.sleep(0.05)
    click.echo(f"stopped the node on {data} (pid {pid})" if wait else f"asked pid {pid} to stop")


commands: list[click.Command] = [stop]
