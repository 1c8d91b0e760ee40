"""The README's getting-started path, run top to bottom as a newcomer would.

Every shell block the README marks with ``<!-- newcomer -->`` is run, in order,
as one bash script (``set -euo pipefail``) in a fresh directory: one node, a
module of one's own written, built (Zig from PyPI, as the suite installs it),
signed, deployed and called, its state read back, two nodes with a cluster CA,
and stopping them. ``edgestate`` on PATH is this checkout's. The only changes
to what a newcomer gets: ``EDGESTATE_API_PORT=0`` / ``EDGESTATE_SYNC_PORT=0``
(the first node's default ports could be taken on a shared machine; the README
reaches nodes by ``--data``, so nothing depends on them) and one invocation
worker per node. Whatever the script leaves running is killed by its process
group afterwards.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
MARK = "<!-- newcomer -->"
# The whole path takes ~30 s on a quiet 2-core machine; the bound is for a loaded one.
TIMEOUT_S = 240


def newcomer_blocks(text: str) -> list[str]:
    """The shell blocks each following a line that is MARK alone, in order."""
    blocks = re.findall(r"^" + re.escape(MARK) + r"\n```sh\n(.*?)\n```", text, re.S | re.M)
    marks = re.findall(r"^" + re.escape(MARK) + r"$", text, re.M)
    if len(marks) != len(blocks):
        raise AssertionError(f"a {MARK} line not followed directly by a ```sh block")
    return blocks


def test_the_readme_marks_the_whole_path() -> None:
    script = "\n".join(newcomer_blocks(README.read_text()))
    # What makes it the path to an invoked module of one's own; a block losing its
    # mark must not leave a test that passes by running less.
    for step in (
        "edgestate node --data node1",
        "edgestate new hello",
        "edgestate build hello",
        "edgestate sign hello/hello.wasm",
        "trust-policy.json",
        "edgestate deploy hello/hello.wasm --data node1",
        "edgestate call hello --data node1",
        "edgestate kv --data node1 get counters world",
        "edgestate cluster init",
        "edgestate stop --data node1",
    ):
        assert step in script, step


def _shim(bin_dir: Path) -> None:
    bin_dir.mkdir()
    shim = bin_dir / "edgestate"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m edgestate.cli.main "$@"\n')
    shim.chmod(0o755)


def _kill_leftovers(work: Path, proc: subprocess.Popen[str]) -> list[int]:
    """Kill what the script left running (its process group); the pids it left."""
    left = []
    for record in work.glob("*/node.json"):
        pid = json.loads(record.read_text()).get("pid")
        if isinstance(pid, int) and Path(f"/proc/{pid}").exists():
            left.append(pid)
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return left


def test_the_newcomer_path_reaches_an_invoked_module_of_ones_own(tmp_path: Path) -> None:
    script = "set -euo pipefail\n" + "\n".join(newcomer_blocks(README.read_text()))
    work = tmp_path / "first"
    work.mkdir()
    _shim(tmp_path / "bin")
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGESTATE_")}
    env.update(
        PATH=f"{tmp_path / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}",
        PYTHONPATH=str(ROOT),
        EDGESTATE_API_PORT="0",
        EDGESTATE_SYNC_PORT="0",
        EDGESTATE_API_WORKERS="1",
    )
    proc = subprocess.Popen(
        ["bash", "-c", script],
        cwd=work,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group: everything it starts dies with it
    )
    try:
        out, _ = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        _kill_leftovers(work, proc)
        out, _ = proc.communicate()
        raise AssertionError(f"the newcomer path did not finish in {TIMEOUT_S} s:\n{out}") from None
    finally:
        left = _kill_leftovers(work, proc)
    logs = "".join(
        f"\n--- {log.name}\n{log.read_text(errors='replace')[-3000:]}"
        for log in sorted(work.glob("*.log"))
    )
    assert proc.returncode == 0, out + logs
    lines = out.splitlines()
    # the module of one's own answered, twice, and its state reads back
    assert "deployed hello 1.0.0" in out, out
    assert ["1", "2", "2"] == [line for line in lines if line in ("1", "2")][:3], out
    assert '{"key": "world", "counter": 2}' in (work / "counters.jsonl").read_text()
    # the write made on a arrived on b over mutual TLS
    assert re.search(r"\bmdns\s+connected\b", out), out
    assert (work / "hello" / "hello.wasm").stat().st_size > 0
    # every node was stopped by the README's own commands, cleanly
    assert left == [], out + logs
    assert not list(work.glob("*/node.json")) and not list(work.glob("*.ready")), out
    for name in ("node1", "a", "b"):
        assert f"stopped the node on {name}" in out
