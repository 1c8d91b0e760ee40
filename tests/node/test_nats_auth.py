"""A node process whose NATS credentials or TLS are refused: it says why, and serves on."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgestate.cli.main import cli
from edgestate.devkit.nats_auth import make_nats_tls
from edgestate.devkit.nats_server import NatsServer
from tests.node.api_check import call
from tests.node.conftest import NodeProcess, eventually, start_node
from tests.schemas import validate

pytestmark = pytest.mark.skipif(
    shutil.which("nats-server") is None, reason="nats-server not installed (scripts/bootstrap)"
)


def _nats(node: NodeProcess) -> dict[str, object]:
    out = CliRunner().invoke(cli, ["cluster", "nats", "--node", node.api, "--token", node.token])
    assert out.exit_code == 0, out.output
    as_json = CliRunner().invoke(
        cli, ["cluster", "nats", "--node", node.api, "--token", node.token, "--json"]
    )
    data: dict[str, object] = json.loads(as_json.stdout)
    validate("cli/nats.schema.json", data)
    data["table"] = out.output
    return data


def test_refused_credentials_and_tls_are_named_by_cli_and_log(tmp_path: Path) -> None:
    material = make_nats_tls(tmp_path / "nats-tls")
    server = NatsServer(
        tmp_path / "nats",
        conf=material.server_conf(verify=True)
        + 'authorization { user: "edge", password: "right-pw" }\n',
    )
    server.start()
    started: list[NodeProcess] = []
    try:
        (tmp_path / "pw").write_text("wrong-pw\n")
        (tmp_path / "pw").chmod(0o600)
        wrong_pw = tmp_path / "wrong-pw.toml"
        wrong_pw.write_text(
            "[sync.nats]\n"
            f'servers = ["{server.url}"]\n'
            'user = "edge"\n'
            f'password_file = "{tmp_path / "pw"}"\n'
            f'ca_cert = "{material.ca_cert}"\n'
            f'cert = "{material.client_cert}"\n'
            f'key = "{material.client_key}"\n'
        )
        no_cert = tmp_path / "no-cert.toml"
        no_cert.write_text(
            f'[sync.nats]\nservers = ["{server.url}"]\nca_cert = "{material.ca_cert}"\n'
        )
        auth = start_node(tmp_path / "auth", "--no-mdns", config=wrong_pw)
        started.append(auth)
        handshake = start_node(tmp_path / "tls", "--no-mdns", config=no_cert)
        started.append(handshake)

        for node, code, words in (
            (auth, "nats_auth", "refused our credentials (Authorization Violation)"),
            (handshake, "nats_tls", "refused our TLS client certificate"),
        ):
            data = eventually(
                lambda node=node, code=code: (d := _nats(node))["last_error_code"] == code and d,  # type: ignore[misc]
                30,
                f"{code} in the node's NATS status",
            )
            assert data["connected"] is False
            assert words in str(data["last_error"])
            assert f"{code}: " in str(data["table"]) and "NOT CONNECTED" in str(data["table"])
            # The node serves on: its API answers, and its log names the reason once.
            assert call(node.api, "GET", "/healthz").status == 200
            assert node.log().count(words) == 1, node.log()
    finally:
        for node in started:
            assert node.stop() == 0, node.log()
        server.stop()
