"""`edgestate dev` as a real process: it starts a local node, deploys the
project, serves requests with their costs and the module's log lines, and picks
up an edit (rebuild, sign, redeploy) so the next request runs the new code."""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgestate.authoring.dev import cost_line
from edgestate.cli.main import cli
from edgestate.devkit import Publisher
from tests.node.conftest import NodeProcess

pytestmark = pytest.mark.timeout(180)
WAIT_S = 90  # a cold build under a loaded machine; each wait ends at its line


class Lines:
    """The process's stdout, line by line, read on a thread."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.seen: list[str] = []
        self._q: queue.Queue[str] = queue.Queue()
        assert proc.stdout is not None
        stdout = proc.stdout
        threading.Thread(target=lambda: [self._q.put(x) for x in stdout], daemon=True).start()

    def until(self, text: str) -> str:
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            try:
                line = self._q.get(timeout=0.5)
            except queue.Empty:
                continue
            self.seen.append(line)
            if text in line:
                return line
        raise AssertionError(f"no line with {text!r} in {WAIT_S} s; saw:\n{''.join(self.seen)}")


def post(url: str, body: bytes) -> bytes:
    with urllib.request.urlopen(urllib.request.Request(url, body, method="POST"), timeout=30) as r:
        return bytes(r.read())


def test_dev_serves_an_edit(tmp_path: Path) -> None:
    assert (
        CliRunner().invoke(cli, ["new", "live", "--lang", "c", "--dir", str(tmp_path)]).exit_code
        == 0
    )
    project = tmp_path / "live"
    source = project / "live.c"
    text = source.read_text().replace(
        "    char out[24];", '    es_log(2, ES_STR("counted"));\n    char out[24];'
    )
    source.write_text(text)
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgestate.cli.main", "dev", str(project)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        lines = Lines(proc)
        assert "live 1.0.0-dev.1" in lines.until("deployed")
        url = lines.until("serving").split()[1]
        assert post(url, b"hits") == b"1"
        cost = lines.until("fuel")
        assert cost.startswith("200") and "instantiate" in cost and "writes 1" in cost
        assert "[live] counted" in lines.until("log")

        source.write_text(text.replace("(uint32_t)n, 1, &total", "(uint32_t)n, 10, &total"))
        assert "live.c" in lines.until("changed")
        assert "live 1.0.0-dev.2" in lines.until("deployed")
        assert post(url, b"hits") == b"11"  # the edit is served, on the same state
        node_pid = json.loads((project / ".edgestate-dev/node/ready.json").read_text())["pid"]
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
        assert proc.stdout is not None
        proc.stdout.close()
    assert code == 0
    with pytest.raises(ProcessLookupError):  # the local node it started stopped with it
        os.kill(node_pid, 0)


def test_cost_line_prints_the_rule_only_when_instantiate_exceeds_execute() -> None:
    slow_start = {"X-Edgestate-Instantiate-Us": "80.0", "X-Edgestate-Execute-Us": "20.0"}
    fast_start = {"X-Edgestate-Instantiate-Us": "20.0", "X-Edgestate-Execute-Us": "80.0"}
    broken = cost_line(200, {**slow_start, "X-Edgestate-Fuel": "7"}, b"ok")
    assert broken[0].startswith("200  fuel 7  instantiate 80.0 us  execute 20.0 us")
    assert len(broken) == 2 and "took longer than execute" in broken[1]
    assert len(cost_line(200, fast_start, b"ok")) == 1


def test_dev_deploys_to_the_node_given(
    tmp_path: Path, publisher: Publisher, sdk_node: NodeProcess
) -> None:
    assert (
        CliRunner().invoke(cli, ["new", "remote", "--lang", "c", "--dir", str(tmp_path)]).exit_code
        == 0
    )
    project = tmp_path / "remote"
    # The node trusts `publisher`: make it this project's dev key.
    key_dir = project / ".edgestate-dev" / "key"
    key_dir.mkdir(parents=True)
    shutil.copy(publisher.key_path, key_dir / "dev.key")
    shutil.copy(publisher.policy_path, key_dir / "dev-trust-policy.json")
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgestate.cli.main", "dev", str(project), "--node", sdk_node.api],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "EDGESTATE_TOKEN": sdk_node.token},
    )
    try:
        lines = Lines(proc)
        assert publisher.public_key in lines.until("dev key      ")
        assert "remote 1.0.0-dev.1" in lines.until("deployed")
        url = lines.until("serving").split()[1]
        assert post(url, b"remote-hits") == b"1"
        assert sdk_node.client.get("counters", "remote-hits")["counter"] == 1
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
        assert proc.stdout is not None
        proc.stdout.close()
    assert code == 0
    assert not (project / ".edgestate-dev" / "node").exists()  # no local node was started
