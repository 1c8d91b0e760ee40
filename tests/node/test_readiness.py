"""Readiness for supervisors: --ready-file, DATA/node.json, sd_notify; the deploy files."""

from __future__ import annotations

import configparser
import json
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from edgestate.cli.readiness import sd_notify
from edgestate.node.config import env_settings
from tests.node.conftest import start_node

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "docs" / "deploy" / "edgestate.service"
CONTAINERFILE = ROOT / "docs" / "deploy" / "Containerfile"


def test_ready_file_and_node_record_appear_when_serving_and_go_on_a_clean_stop(
    tmp_path: Path,
) -> None:
    data = tmp_path / "d"
    node = start_node(data, "--no-mdns")  # start_node waits for data/ready.json
    try:
        ready = json.loads((data / "ready.json").read_text())
        assert ready == json.loads((data / "node.json").read_text())
        assert ready["api"] == node.api and ready["pid"] == node.proc.pid
        assert ready["sync_port"] == node.sync_port and ready["node_id"] == node.node_id
        assert not list(data.glob(".*.tmp"))  # written by rename, nothing half-written left
    finally:
        assert node.stop() == 0
    assert not (data / "ready.json").exists()
    assert not (data / "node.json").exists()


def test_sd_notify_tells_a_real_notify_socket_ready_then_stopping(tmp_path: Path) -> None:
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(30)  # bounds the test; the node is ready long before
        node = start_node(tmp_path / "d", "--no-mdns", env={"NOTIFY_SOCKET": str(path)})
        try:
            ready = sock.recv(4096).decode()
        finally:
            code = node.stop()
        assert code == 0
        assert ready == f"READY=1\nMAINPID={node.proc.pid}\nSTATUS=serving on {node.api}"
        assert sock.recv(4096) == b"STOPPING=1"


def test_sd_notify_abstract_address_absent_and_dead_sockets(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    name = f"edgestate-test-{tmp_path.name}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        assert sd_notify("READY=1", {"NOTIFY_SOCKET": "@" + name}) is True
        assert sock.recv(64) == b"READY=1"
    assert sd_notify("READY=1", {}) is False  # not under systemd: nothing to do
    gone = str(tmp_path / "nobody.sock")
    assert sd_notify("READY=1", {"NOTIFY_SOCKET": gone}) is False
    assert f"cannot notify the supervisor at NOTIFY_SOCKET={gone}" in caplog.text


def _unit() -> configparser.ConfigParser:
    unit = configparser.ConfigParser(strict=True, interpolation=None, delimiters=("=",))
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read_string(UNIT.read_text())
    return unit


def test_the_unit_file_waits_for_readiness_and_is_hardened() -> None:
    service = _unit()["Service"]
    assert service["Type"] == "notify" and service["NotifyAccess"] == "main"
    assert re.match(r"\S+/edgestate node .*--data \$\{STATE_DIRECTORY\}", service["ExecStart"])
    for key in ("DynamicUser", "ProtectHome", "PrivateTmp", "NoNewPrivileges", "PrivateDevices"):
        assert service[key] == "yes", key
    assert service["ProtectSystem"] == "strict"
    assert service["StateDirectory"] == "edgestate"
    for line in service["Environment"].split():
        assert line.split("=")[0] in env_settings(), line


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not here")
def test_systemd_analyze_verify_finds_nothing_wrong_with_the_unit(tmp_path: Path) -> None:
    # verify insists that ExecStart exists: point it at this checkout's entry point.
    edgestate = Path(sys.executable).parent / "edgestate"
    unit = tmp_path / "edgestate.service"
    unit.write_text(UNIT.read_text().replace("/opt/edgestate/bin/edgestate", str(edgestate)))
    done = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # An unknown or misspelt key is only a warning to systemd: any output fails here.
    assert (done.returncode, done.stderr, done.stdout) == (0, "", "")


def test_the_containerfile_sets_only_real_settings_and_waits_for_readiness() -> None:
    text = CONTAINERFILE.read_text().replace("\\\n", " ")
    instructions = [
        line.split(None, 1) for line in text.splitlines() if line and not line.startswith("#")
    ]
    env_lines = [rest for word, rest in instructions if word == "ENV"]
    names = [m for rest in env_lines for m in re.findall(r"(\w+)=", rest)]
    assert [n for n in names if n.startswith("EDGESTATE_")] == [
        "EDGESTATE_DATA_DIR",
        "EDGESTATE_API_HOST",
        "EDGESTATE_SYNC_HOST",
        "EDGESTATE_SYNC_MDNS",
        "EDGESTATE_LOG_FORMAT",
    ]
    for name in names:
        assert name == "PATH" or name in env_settings(), name
    entry = json.loads(next(rest for word, rest in instructions if word == "ENTRYPOINT"))
    assert entry[:2] == ["edgestate", "node"] and "--ready-file" in entry
    assert any(word == "USER" for word, _ in instructions)
    assert any(word == "HEALTHCHECK" and "/healthz" in rest for word, rest in instructions)
