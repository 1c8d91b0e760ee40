"""api.tls: HTTPS with the cluster certificate; a cluster client certificate is admin."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import tomli_w

from edgestate.client import NodeAPIError, NodeClient, NodeUnreachableError, tls_context
from edgestate.sync import tls
from tests.node.conftest import NodeProcess, start_node


@pytest.fixture
def cluster(tmp_path: Path) -> Path:
    ca = tmp_path / "ca"
    tls.init_cluster(ca)
    for name in ("node", "operator"):
        tls.issue_node(ca, name, tmp_path / name)
    other = tmp_path / "other-ca"
    tls.init_cluster(other)
    tls.issue_node(other, "intruder", tmp_path / "intruder")
    return tmp_path


@pytest.fixture
def node(cluster: Path) -> Iterator[NodeProcess]:
    files = tls.files_for(cluster / "node", "node")
    config = cluster / "node.toml"
    sync = {
        "ca_cert": str(files.ca_cert),
        "cert": str(files.cert),
        "key": str(files.key),
        "mdns": False,
    }
    config.write_text(tomli_w.dumps({"api": {"tls": True}, "sync": sync}))
    n = start_node(cluster / "data", config=config)
    yield n
    n.stop()


def _client(node: NodeProcess, cluster: Path, who: str | None, token: str | None) -> NodeClient:
    ca = str(cluster / "node" / "ca.pem")
    if who is None:
        return NodeClient(node.api, token, ssl_context=tls_context(ca, None, None))
    files = tls.files_for(cluster / who, who)
    return NodeClient(node.api, token, ssl_context=tls_context(ca, str(files.cert), str(files.key)))


def test_api_serves_https_and_a_cluster_certificate_is_admin(
    node: NodeProcess, cluster: Path
) -> None:
    assert node.api.startswith("https://")
    assert _client(node, cluster, "operator", None).status()["ready"] is True
    assert _client(node, cluster, None, node.token).status()["ready"] is True
    with pytest.raises(NodeAPIError) as refused:
        _client(node, cluster, None, None).status()
    assert refused.value.status == 401


def test_a_certificate_of_another_cluster_is_refused(node: NodeProcess, cluster: Path) -> None:
    ca = str(cluster / "node" / "ca.pem")
    files = tls.files_for(cluster / "intruder", "intruder")
    intruder = NodeClient(
        node.api, None, ssl_context=tls_context(ca, str(files.cert), str(files.key))
    )
    with pytest.raises(NodeUnreachableError):
        intruder.status()
    assert _client(node, cluster, "operator", None).status()["ready"] is True
