"""The main job: `edgestate demo` runs a cluster end to end and leaves nothing running."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize("mode", [[], ["--no-mdns"]], ids=["mdns", "static-peers"])
def test_demo_converges_and_stops_cleanly(mode: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "edgestate.cli.main", "demo", "--invocations", "30", *mode],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "converged: documents kv, counters, sessions identical on all 3 nodes" in out
    assert "30/30 keys" in out
    assert "exit codes [0, 0, 0]; nothing left running" in out
