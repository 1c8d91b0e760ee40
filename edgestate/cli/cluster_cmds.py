"""``edgestate cluster``: the cluster CA and node certificates for peer sync.

    edgestate cluster init --dir ca/          create the CA (refuses to overwrite one)
    edgestate cluster issue NODE --dir ca/    issue NODE.pem/NODE.key (+ ca.pem, crl.pem);
                                              refuses to replace NODE's existing key
                                              unless --replace
    edgestate cluster revoke CERT --dir ca/   add CERT to the CRL
    edgestate cluster nats                    a running node's NATS link (cli/nats_cmd.py)

Registered in the main group by ``edgestate.cli.main`` from ``commands``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import click

from edgestate.cli.nats_cmd import nats_cmd
from edgestate.errors import EdgestateError

# Node names become file names and certificate common names.
_NODE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")

_dir_option = click.option(
    "--dir",
    "ca_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("cluster-ca"),
    show_default=True,
    help="Directory holding the cluster CA (ca.pem, ca.key, crl.pem).",
)
_json_option = click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")


def _emit(as_json: bool, payload: dict[str, str], text: str) -> None:
    click.echo(json.dumps(payload) if as_json else text)


def _fail(exc: EdgestateError, as_json: bool) -> None:
    from edgestate.cli.errors_out import EXIT_ERROR, fail

    fail(exc.code, str(exc), EXIT_ERROR, as_json=as_json)


@click.group("cluster")
def cluster() -> None:
    """Manage the cluster CA that authenticates sync peers (mutual TLS)."""


@cluster.command("init")
@_dir_option
@click.option("--name", default="edgestate cluster", show_default=True, help="CA common name.")
@_json_option
def init(ca_dir: Path, name: str, as_json: bool) -> None:
    """Create a new cluster CA; its fingerprint is the cluster id."""
    from edgestate.sync import tls  # cryptography: only when a command runs

    try:
        cluster_id = tls.init_cluster(ca_dir, name=name)
    except EdgestateError as exc:
        _fail(exc, as_json)
        return
    _emit(
        as_json,
        {"cluster_id": cluster_id, "dir": str(ca_dir)},
        f"cluster CA created in {ca_dir}\ncluster id {cluster_id}\n"
        f"keep {ca_dir / tls.CA_KEY} secret; issue nodes with `edgestate cluster issue NODE`",
    )


@cluster.command("issue")
@click.argument("node")
@_dir_option
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where to write NODE.pem, NODE.key, ca.pem and crl.pem [default: DIR/NODE].",
)
@click.option("--days", type=click.IntRange(1, 36500), default=365, show_default=True)
@click.option(
    "--replace",
    is_flag=True,
    help="Re-issue NODE although OUT already holds its key: it gets a new key and node id.",
)
@_json_option
def issue(
    node: str, ca_dir: Path, out: Path | None, days: int, replace: bool, as_json: bool
) -> None:
    """Issue a node certificate; the node id is its fingerprint.

    Refuses to overwrite NODE's existing certificate or key unless --replace.
    """
    from edgestate.sync import tls  # cryptography: only when a command runs

    if not _NODE_NAME.fullmatch(node):
        raise click.BadParameter("use 1-64 of [A-Za-z0-9_.-]", param_hint="NODE")
    target = out or ca_dir / node
    try:
        identity = tls.issue_node(ca_dir, node, target, days=days, replace=replace)
    except EdgestateError as exc:
        _fail(exc, as_json)
        return
    _emit(
        as_json,
        {
            "node": node,
            "node_id": identity.node_id,
            "cluster_id": identity.cluster_id,
            "dir": str(target),
        },
        f"issued {target / (node + '.pem')}\nnode id {identity.node_id}",
    )


@cluster.command("revoke")
@click.argument("cert", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@_dir_option
@_json_option
def revoke(cert: Path, ca_dir: Path, as_json: bool) -> None:
    """Revoke a node certificate: copy the new crl.pem to every node."""
    from edgestate.sync import tls  # cryptography: only when a command runs

    try:
        node_id = tls.revoke(ca_dir, cert)
    except EdgestateError as exc:
        _fail(exc, as_json)
        return
    _emit(
        as_json,
        {"revoked": node_id, "crl": str(ca_dir / tls.CRL)},
        f"revoked node {node_id}\ncopy {ca_dir / tls.CRL} to every node and restart its sync",
    )


cluster.add_command(nats_cmd)

commands: list[click.Command] = [cluster]
