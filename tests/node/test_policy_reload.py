"""On a real node: the trust policy is reloaded by SIGHUP, the API and the CLI; a bad
file keeps the old policy; modules the new one refuses are unloaded."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from edgestate.cli.main import cli
from edgestate.devkit import make_publisher
from tests.node.api_check import call
from tests.node.conftest import NodeProcess, eventually, start_node
from tests.node.test_modules_e2e import deploy, invoke, wat_bundle


def _reload(node: NodeProcess) -> Any:
    return call(node.api, "POST", "/v1/admin/trust-policy/reload", token=node.token)


def _row(node: NodeProcess, name: str) -> dict[str, Any]:
    rows = call(node.api, "GET", "/v1/admin/modules", token=node.token).json()["modules"]
    return next(r for r in rows if r["name"] == name)


def test_the_trust_policy_is_reloaded_without_a_restart(tmp_path: Path) -> None:
    publisher = make_publisher(tmp_path / "pub")
    stranger = make_publisher(tmp_path / "stranger", name="stranger")
    bundle = wat_bundle(publisher, "reloaded", "big_output")
    data = tmp_path / "data"
    node = start_node(data, "--no-mdns")  # no policy file yet: nobody is trusted
    try:
        refused = deploy(node, bundle)
        assert refused.status == 403
        message = refused.json()["error"]["message"]
        assert "SIGHUP" in message and "edgestate trust reload" in message
        assert str(data / "trust-policy.json") in message

        # SIGHUP: the policy written after start is read, the deploy goes through.
        policy = data / "trust-policy.json"
        policy.write_text(publisher.policy_path.read_text())
        node.proc.send_signal(signal.SIGHUP)
        eventually(lambda: deploy(node, bundle).status == 201, what="deploy after SIGHUP")
        assert "trust policy reloaded" in node.log()
        assert invoke(node, "reloaded", b"").status == 200

        # A file that does not parse is refused, naming why; the running policy stays.
        good = policy.read_text()
        policy.write_text(good.replace('"version": 1', '"version": 1, "version": 1'))
        runner = CliRunner()
        args = ["trust", "reload", "--node", node.api, "--token", node.token]
        result = runner.invoke(cli, args)
        assert result.exit_code == 1
        assert "error: policy_reload_failed:" in result.stderr
        assert "duplicate_json_key" in result.stderr and "the running policy stays" in result.stderr
        assert invoke(node, "reloaded", b"").status == 200
        node.proc.send_signal(signal.SIGHUP)  # the same through SIGHUP: logged, node serves
        eventually(lambda: node.log().count("the running policy stays") >= 2, what="logged")
        assert call(node.api, "GET", "/readyz").status == 200

        # A policy that no longer trusts the publisher unloads its module, saying why.
        policy.write_text(stranger.policy_path.read_text())
        reply = _reload(node)
        assert reply.status == 200, reply.body
        summary = reply.json()
        assert summary["unloaded"] == ["reloaded"] and summary["activated"] == []
        assert summary["added"] == ["stranger"] and summary["removed"] == ["demo"]
        row = _row(node, "reloaded")
        assert row["state"] == "refused" and row["version"] is None
        assert row["error_code"] == "untrusted_publisher"
        assert invoke(node, "reloaded", b"").json()["error"]["code"] == "unknown_module"

        # Trusted again: the stored bundle loads with no redeploy.
        policy.write_text(good)
        result = runner.invoke(cli, [*args, "--json"])
        assert result.exit_code == 0, result.output
        assert json.loads(result.output)["activated"] == ["reloaded"]
        assert _row(node, "reloaded")["state"] == "active"
        assert invoke(node, "reloaded", b"").status == 200

        # A policy file that vanished is refused too: more likely a mistake than a wish.
        policy.unlink()
        gone = _reload(node)
        assert gone.status == 422 and gone.json()["error"]["code"] == "policy_reload_failed"
        assert _row(node, "reloaded")["state"] == "active"
    finally:
        assert node.stop() == 0, node.log()
