"""``edgestate deploy --allow-downgrade``, ``rollback``, ``modules`` history and the
``undeploy`` confirmation, against a real node (api.workers = 0).

The confirmation is answered on a real pseudo-terminal: the command asks only
when its standard input is one.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from edgestate.cli.main import cli
from edgestate.devkit import Bundle, Publisher, make_publisher
from tests.node.conftest import NodeProcess, start_node
from tests.node.rollback_bundles import versioned
from tests.schemas import validate

PTY_TIMEOUT_S = 30


@pytest.fixture(scope="module")
def publisher(tmp_path_factory: pytest.TempPathFactory) -> Publisher:
    return make_publisher(tmp_path_factory.mktemp("publisher"))


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory, publisher: Publisher) -> Iterator[NodeProcess]:
    data = tmp_path_factory.mktemp("rollback-cli") / "data"
    data.mkdir()
    shutil.copy(publisher.policy_path, data / "trust-policy.json")
    n = start_node(data, "--no-mdns", "--workers", "0")
    try:
        yield n
    finally:
        assert n.stop() == 0, n.log()


def target(node: NodeProcess) -> list[str]:
    return ["--node", node.api, "--token", node.token]


def run(node: NodeProcess, *args: str) -> Result:
    return CliRunner().invoke(cli, [*args, *target(node)])


def bundle_files(directory: Path, bundle: Bundle) -> Path:
    """``bundle`` as the files ``edgestate deploy`` reads; the wasm's path."""
    directory.mkdir(parents=True, exist_ok=True)
    wasm = directory / "mod.wasm"
    wasm.write_bytes(bundle.wasm)
    (directory / "mod.manifest.json").write_bytes(bundle.manifest)
    (directory / "mod.sig").write_bytes(bundle.signature)
    return wasm


def deploy(node: NodeProcess, directory: Path, bundle: Bundle, *flags: str) -> Result:
    return run(node, "deploy", str(bundle_files(directory, bundle)), *flags)


def test_deploy_refuses_a_downgrade_unless_allowed(
    node: NodeProcess, publisher: Publisher, tmp_path: Path
) -> None:
    for version in ("0.1.0", "0.2.0"):
        done = deploy(node, tmp_path / version, versioned(publisher, "dg", version))
        assert done.exit_code == 0, done.output
    refused = deploy(node, tmp_path / "old", versioned(publisher, "dg", "0.1.0"))
    assert refused.exit_code == 1
    assert "error: module_downgrade: " in refused.stderr
    assert "--allow-downgrade" in refused.stderr
    allowed = deploy(
        node, tmp_path / "old2", versioned(publisher, "dg", "0.1.0"), "--allow-downgrade"
    )
    assert allowed.exit_code == 0, allowed.output
    assert allowed.stdout.startswith("deployed dg 0.1.0")


def test_rollback_and_the_history_in_modules(
    node: NodeProcess, publisher: Publisher, tmp_path: Path
) -> None:
    for version in ("1.0.0", "1.1.0", "1.2.0"):
        done = deploy(node, tmp_path / version, versioned(publisher, "hist", version))
        assert done.exit_code == 0, done.output
    back = run(node, "rollback", "hist")
    assert back.exit_code == 0, back.output
    assert back.stdout.startswith("rolled hist back to 1.1.0")
    named = run(node, "rollback", "hist", "1.0.0", "--json")
    assert named.exit_code == 0, named.output
    assert json.loads(named.stdout)["version"] == "1.0.0"
    unknown = run(node, "rollback", "hist", "0.9.0")
    assert unknown.exit_code == 1
    assert "error: unknown_version: " in unknown.stderr and "1.2.0, 1.1.0, 1.0.0" in unknown.stderr
    nothing = run(node, "rollback", "hist")
    assert nothing.exit_code == 1 and "error: nothing_to_roll_back: " in nothing.stderr
    missing = run(node, "rollback", "no-such")
    assert missing.exit_code == 1 and "error: unknown_module: " in missing.stderr

    listed = run(node, "modules", "--json")
    assert listed.exit_code == 0, listed.output
    data = json.loads(listed.stdout)
    validate("cli/modules.schema.json", data)
    hist = next(m for m in data["modules"] if m["name"] == "hist")
    assert [(h["version"], h["active"]) for h in hist["history"]] == [
        ("1.2.0", False),
        ("1.1.0", False),
        ("1.0.0", True),
    ]
    assert hist["activation"] == "rollback" and hist["active_version"] == "1.0.0"

    text = run(node, "modules")
    assert text.exit_code == 0, text.output
    lines = text.stdout.splitlines()
    assert any(line.split()[:4] == ["HISTORY", "VERSION", "ACTIVE", "DEPLOYED"] for line in lines)
    history = [line.split() for line in lines if line.startswith("hist ")]
    # The module's row in the first table, then its three kept versions.
    assert [h[1] for h in history[1:]] == ["1.2.0", "1.1.0", "1.0.0"]
    assert [h[2] == "*" for h in history[1:]] == [False, False, True]


def in_terminal(node: NodeProcess, args: list[str], answer: bytes) -> tuple[int, str]:
    """Run the CLI on a pseudo-terminal, answer its question, return (status, output)."""
    leader, follower = os.openpty()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgestate.cli.main", *args, *target(node)],
        stdin=follower,
        stdout=follower,
        stderr=follower,
        env=env,
        close_fds=True,
    )
    os.close(follower)
    out = b""
    answered = False
    deadline = time.monotonic() + PTY_TIMEOUT_S
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.5)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            out += chunk
            if not answered and b"[y/N]" in out:
                os.write(leader, answer)
                answered = True
        return proc.wait(timeout=PTY_TIMEOUT_S), out.decode(errors="replace")
    finally:
        os.close(leader)
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def module_names(node: NodeProcess) -> set[str]:
    return {m["name"] for m in node.client.modules() if m["state"] == "active"}


def test_undeploy_asks_first(node: NodeProcess, publisher: Publisher, tmp_path: Path) -> None:
    done = deploy(node, tmp_path / "u", versioned(publisher, "gone", "1.0.0"))
    assert done.exit_code == 0, done.output

    # No terminal to ask (CliRunner's stdin is not one): refused, nothing removed.
    piped = run(node, "undeploy", "gone")
    assert piped.exit_code == 1
    assert "error: confirmation_required: " in piped.stderr and "--yes" in piped.stderr
    assert "gone" in module_names(node)

    status, out = in_terminal(node, ["undeploy", "gone"], b"n\n")
    assert "remove module gone from every node of the cluster? [y/N]" in out
    assert status == 1 and "not removed: gone" in out
    assert "gone" in module_names(node)

    status, out = in_terminal(node, ["undeploy", "gone"], b"y\n")
    assert status == 0 and "removed gone" in out, out
    assert "gone" not in module_names(node)

    again = deploy(node, tmp_path / "u2", versioned(publisher, "gone", "1.0.0"))
    assert again.exit_code == 0, again.output
    yes = run(node, "undeploy", "gone", "--yes")
    assert yes.exit_code == 0 and yes.stdout.strip() == "removed gone"
    assert "gone" not in module_names(node)
