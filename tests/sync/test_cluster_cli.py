"""``edgestate cluster`` through click's runner."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from edgestate.cli.cluster_cmds import cluster, commands
from edgestate.sync import tls


def test_the_cluster_group_is_exported_for_the_main_cli() -> None:
    assert commands == [cluster]
    assert set(cluster.commands) == {"init", "issue", "revoke", "nats"}


def test_init_issue_revoke(tmp_path: Path) -> None:
    runner = CliRunner()
    ca = tmp_path / "ca"
    result = runner.invoke(cluster, ["init", "--dir", str(ca), "--json"])
    assert result.exit_code == 0, result.output
    cluster_id = json.loads(result.output)["cluster_id"]

    result = runner.invoke(cluster, ["issue", "edge-1", "--dir", str(ca), "--json"])
    assert result.exit_code == 0, result.output
    issued = json.loads(result.output)
    assert issued["cluster_id"] == cluster_id
    files = tls.files_for(ca / "edge-1", "edge-1")
    assert tls.load_identity(files).node_id == issued["node_id"]

    result = runner.invoke(cluster, ["revoke", str(files.cert), "--dir", str(ca)])
    assert result.exit_code == 0 and issued["node_id"] in result.output


def test_errors_are_reported_plainly(tmp_path: Path) -> None:
    runner = CliRunner()
    ca = tmp_path / "ca"
    assert runner.invoke(cluster, ["init", "--dir", str(ca)]).exit_code == 0
    again = runner.invoke(cluster, ["init", "--dir", str(ca), "--json"])
    assert again.exit_code == 1
    assert json.loads(again.output)["error"]["code"] == "cluster_ca"  # docs/cli.md shape
    missing = runner.invoke(cluster, ["issue", "n", "--dir", str(tmp_path / "nope")])
    assert missing.exit_code == 1 and "edgestate cluster init" in missing.output
    bad = runner.invoke(cluster, ["issue", "../evil", "--dir", str(ca)])
    assert bad.exit_code == 2
