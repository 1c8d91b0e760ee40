"""`edgestate demo --keep` leaves a reachable cluster; `demo --stop DIR` ends it."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from edgestate.client import NodeClient
from tests.node.conftest import eventually


def _cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGESTATE_")}
    return subprocess.run(
        [sys.executable, "-m", "edgestate.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_a_kept_demo_is_reachable_and_stops_with_nothing_left() -> None:
    pids: list[int] = []
    work: Path | None = None
    try:
        done = _cli("demo", "--keep", "--invocations", "10", timeout=180)
        assert done.returncode == 0, done.stdout + done.stderr
        out = done.stdout
        found = re.search(r"cluster kept running in (\S+):", out)
        assert found, out
        work = Path(found.group(1))
        nodes = json.loads((work / "cluster.json").read_text())["nodes"]
        pids = [n["pid"] for n in nodes]
        assert len(nodes) == 3 and all(_alive(p) for p in pids)
        assert f"edgestate demo --stop {work}" in out
        assert "--keep uses static peers" in out  # mDNS in a namespace would be unreachable
        for node in nodes:
            token = (Path(node["data"]) / "admin.token").read_text().strip()
            assert NodeClient(node["api"], token).status()["connected_peers"] == 2
        # the commands it suggests work as printed
        first = nodes[0]["data"]
        status = _cli("status", "--json", "--data", first)
        assert status.returncode == 0 and json.loads(status.stdout)["api"] == nodes[0]["api"]
        called = _cli("call", "counter", "--data", first, "--input", "hello")
        assert called.returncode == 0, called.stderr
        got = _cli("kv", "--data", first, "get", "counters", "burst")
        assert got.returncode == 0 and int(got.stdout) == 10, got.stdout + got.stderr

        stopped = _cli("demo", "--stop", str(work))
        assert stopped.returncode == 0, stopped.stderr
        assert stopped.stdout == f"stopped 3 node(s); removed {work}\n"
        eventually(lambda: not any(_alive(p) for p in pids), 10, "every node gone")
        assert not work.exists()
        again = _cli("demo", "--stop", str(work))
        assert again.returncode == 2 and "error: usage:" in again.stderr
    finally:
        for pid in pids:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_stop_never_signals_a_pid_that_is_no_longer_a_node(tmp_path: Path) -> None:
    # A recorded pid reused by another process: --stop must leave it alone.
    other = subprocess.Popen(["sleep", "60"])
    try:
        work = tmp_path / "kept"
        work.mkdir()
        (work / "cluster.json").write_text(
            json.dumps(
                {
                    "nodes": [
                        {
                            "name": "node0",
                            "api": "http://127.0.0.1:9",
                            "pid": other.pid,
                            "data": str(work),
                        }
                    ]
                }
            )
        )
        stopped = _cli("demo", "--stop", str(work))
        assert stopped.returncode == 0, stopped.stderr
        assert stopped.stdout == f"stopped 0 node(s); 1 had already stopped; removed {work}\n"
        assert other.poll() is None  # still running
    finally:
        other.kill()
        other.wait(timeout=10)
