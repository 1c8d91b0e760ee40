"""Node processes at two sites joined by NATS: module rollout, state, CLI and metrics."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from edgestate.cli.main import cli
from edgestate.devkit import example_bundle, make_publisher
from edgestate.devkit.nats_server import nats_cluster
from tests.node.api_check import call
from tests.node.conftest import NodeProcess, eventually, start_node
from tests.node.test_modules_e2e import BUILD, deploy, invoke
from tests.schemas import validate

pytestmark = pytest.mark.skipif(
    shutil.which("nats-server") is None, reason="nats-server not installed (scripts/bootstrap)"
)


def nats_toml(path: Path, url: str, *, gateway: bool) -> Path:
    """A node config file joining the NATS server at ``url`` (as a gateway or not)."""
    path.write_text(
        "[sync.nats]\n"
        f'servers = ["{url}"]\n'
        f"gateway = {'true' if gateway else 'false'}\n"
        "answer_window_s = 0.5\n"
    )
    return path


def _metric(node: NodeProcess, name: str) -> float:
    text = call(node.api, "GET", "/metrics").body.decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                return float(sample.value)
    raise AssertionError(f"{name} not in /metrics")


def test_a_module_rolls_out_to_another_site_and_its_state_follows(tmp_path: Path) -> None:
    publisher = make_publisher(tmp_path / "publisher")
    with nats_cluster(tmp_path / "nats") as servers:
        url = servers[0].url
        started: list[NodeProcess] = []
        try:
            for name in ("a1", "b1", "b2"):
                data = tmp_path / name
                data.mkdir()
                shutil.copy(publisher.policy_path, data / "trust-policy.json")
            a1 = start_node(
                tmp_path / "a1",
                "--no-mdns",
                config=nats_toml(tmp_path / "a.toml", url, gateway=False),
            )
            started.append(a1)
            # Site B: a gateway on NATS and a node that only has its LAN link to it.
            b1 = start_node(
                tmp_path / "b1",
                "--no-mdns",
                config=nats_toml(tmp_path / "b.toml", url, gateway=True),
            )
            started.append(b1)
            b2 = start_node(tmp_path / "b2", "--no-mdns", "--peer", f"127.0.0.1:{b1.sync_port}")
            started.append(b2)

            reply = deploy(a1, example_bundle("counter", publisher, BUILD))
            assert reply.status == 201, reply.body

            def active(node: NodeProcess) -> bool:
                rows = call(node.api, "GET", "/v1/admin/modules", token=node.token).json()
                return any(
                    m["name"] == "counter" and m["state"] == "active" for m in rows["modules"]
                )

            eventually(lambda: active(b2), 30, "counter active on the LAN-only node of site B")
            first = invoke(b2, "counter", b"visits")
            assert first.status == 200, first.body
            eventually(
                lambda: int(invoke(a1, "counter", b"visits").body) >= int(first.body) + 1,
                30,
                "site B's count reached site A",
            )

            table = CliRunner().invoke(
                cli, ["cluster", "nats", "--node", a1.api, "--token", a1.token]
            )
            assert table.exit_code == 0, table.output
            assert "connected to 127.0.0.1" in table.output
            as_json = CliRunner().invoke(
                cli, ["cluster", "nats", "--node", a1.api, "--token", a1.token, "--json"]
            )
            out = json.loads(as_json.stdout)
            validate("cli/nats.schema.json", out)
            assert out["enabled"] and out["connected"] and out["bytes_in"] > 0
            assert {d["doc"] for d in out["docs"]} >= {"_modules"}
            assert all(d["lag"] >= 0 for d in out["docs"])
            # The API answer itself, checked against schemas/openapi.yaml by call().
            assert call(a1.api, "GET", "/v1/admin/nats", token=a1.token).json()["connected"]
            assert _metric(a1, "edgestate_nats_connected") == 1.0
            assert _metric(a1, "edgestate_nats_bytes_total") > 0
            # A node without a link says so, in both forms.
            plain = CliRunner().invoke(
                cli, ["cluster", "nats", "--node", b2.api, "--token", b2.token]
            )
            assert "no NATS link" in plain.output
            off = json.loads(
                CliRunner()
                .invoke(cli, ["cluster", "nats", "--node", b2.api, "--token", b2.token, "--json"])
                .stdout
            )
            assert off == {"enabled": False}
        finally:
            for node in started:
                assert node.stop() == 0, node.log()
