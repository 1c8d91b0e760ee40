"""``edgestate demo --keep``: leave the cluster running, and ``--stop DIR`` to end it.

A kept cluster is recorded in ``DIR/cluster.json`` (each node's name, API URL,
sync port, pid and data directory). ``--stop DIR`` sends each recorded node
SIGTERM (only if that pid is still an ``edgestate node`` process: a pid reused
by something else is never signalled), waits for it to exit, SIGKILLs what
does not within the grace, and removes DIR.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path
from typing import Any

import click

from edgestate.errors import ConfigError

CLUSTER_FILE = "cluster.json"
# A node drains in-flight invocations for api.shutdown_grace_s (10 s) at most.
STOP_GRACE_S = 30.0


def record_cluster(work: Path, nodes: list[dict[str, Any]]) -> Path:
    """Write DIR/cluster.json for a kept cluster."""
    path = work / CLUSTER_FILE
    path.write_text(json.dumps({"nodes": nodes}, indent=2) + "\n")
    return path


def print_kept(work: Path, nodes: list[dict[str, Any]]) -> None:
    """How to reach the kept cluster and how to stop it."""
    click.echo(f"  cluster kept running in {work}:")
    for node in nodes:
        click.echo(f"    {node['name']}: {node['api']}  (pid {node['pid']}, data {node['data']})")
    first = nodes[0]["data"]
    click.echo(f"  admin tokens: {work}/NODE/data/admin.token (e.g. {first}/admin.token)")
    click.echo("  try:")
    click.echo(f"    edgestate status --data {first}")
    click.echo(f"    edgestate call counter --data {first} --input hello")
    click.echo(f"    edgestate kv --data {first} get counters burst")
    click.echo("  stop it (and remove the directory) with:")
    click.echo(f"    edgestate demo --stop {work}")


def _is_node(pid: int) -> bool:
    """Whether ``pid`` is a live (not zombie) ``edgestate ... node`` process."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z" and b"edgestate.cli.main" in b" ".join(cmdline) and b"node" in cmdline


def stop_cluster(work: Path) -> None:
    """Stop the nodes recorded in ``work`` and remove it (see the module docstring)."""
    path = work / CLUSTER_FILE
    try:
        nodes = json.loads(path.read_text())["nodes"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(
            f"{work} is not a kept demo cluster (no readable {CLUSTER_FILE}): {exc}"
        ) from None
    pids = [int(n["pid"]) for n in nodes if _is_node(int(n["pid"]))]
    for pid in pids:
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    while any(_is_node(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    stubborn = [p for p in pids if _is_node(p)]
    for pid in stubborn:
        os.kill(pid, signal.SIGKILL)
    shutil.rmtree(work)
    gone = len(nodes) - len(pids)
    click.echo(
        f"stopped {len(pids)} node(s)"
        + (f" ({len(stubborn)} killed after {STOP_GRACE_S:.0f} s)" if stubborn else "")
        + (f"; {gone} had already stopped" if gone else "")
        + f"; removed {work}"
    )
