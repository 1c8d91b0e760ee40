"""``cluster issue`` must not silently replace a live node's key (and so its id)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgestate.cli.cluster_cmds import cluster
from edgestate.errors import ClusterCAError
from edgestate.sync import tls


def _issue(ca: Path, *extra: str) -> tuple[int, str]:
    result = CliRunner().invoke(cluster, ["issue", "node1", "--dir", str(ca), "--json", *extra])
    return result.exit_code, result.output


def test_issue_refuses_to_replace_a_nodes_key_without_replace(tmp_path: Path) -> None:
    ca = tmp_path / "ca"
    tls.init_cluster(ca)
    code, out = _issue(ca)
    assert code == 0, out
    first = json.loads(out)["node_id"]
    files = tls.files_for(ca / "node1", "node1")
    key_before, cert_before = files.key.read_bytes(), files.cert.read_bytes()

    code, out = _issue(ca)
    assert code == 1
    refusal = json.loads(out)["error"]  # the one JSON error shape (docs/cli.md)
    assert refusal["code"] == "cluster_ca"
    assert "--replace" in refusal["message"] and first in refusal["message"]
    # Nothing was touched: the node keeps its key, certificate and id.
    assert files.key.read_bytes() == key_before and files.cert.read_bytes() == cert_before
    assert tls.load_identity(files).node_id == first

    code, out = _issue(ca, "--replace")
    assert code == 0, out
    assert json.loads(out)["node_id"] != first
    assert tls.load_identity(files).node_id == json.loads(out)["node_id"]


def test_a_lone_key_also_blocks_reissue(tmp_path: Path) -> None:
    ca = tmp_path / "ca"
    tls.init_cluster(ca)
    out = tmp_path / "n"
    out.mkdir()
    (out / "node1.key").write_bytes(b"not even a key")
    with pytest.raises(ClusterCAError, match=r"node1\.key already exists"):
        tls.issue_node(ca, "node1", out)
    assert (out / "node1.key").read_bytes() == b"not even a key"
    assert not (out / "node1.pem").exists()
