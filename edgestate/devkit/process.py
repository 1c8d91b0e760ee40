"""Node processes for the demo and tests: start one and wait until it is ready."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from edgestate.errors import NodeStartError


def spawn_node(
    args: list[str],
    ready_file: Path,
    log_path: Path,
    *,
    timeout: float = 30.0,
    env: dict[str, str] | None = None,
) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    """Start ``edgestate node ARGS`` as a process and wait for its ready file.

    Returns the process and what the node wrote to the ready file (``api``,
    ``sync_port``, ``node_id``, ``pid``). Output goes to ``log_path``.
    """
    ready_file.unlink(missing_ok=True)
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "edgestate.cli.main",
                "node",
                *args,
                "--ready-file",
                str(ready_file),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    deadline = time.monotonic() + timeout
    while not ready_file.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            raise NodeStartError(
                f"node exited with {proc.returncode} before it was ready:\n"
                + log_path.read_text(errors="replace")
            )
        time.sleep(0.02)
    return proc, dict(json.loads(ready_file.read_text()))
