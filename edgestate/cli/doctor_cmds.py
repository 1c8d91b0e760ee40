"""``edgestate doctor``: is this node, and every peer it knows, healthy?

    edgestate doctor [--node URL] [--token ...] [--json]

The node does the checking (``GET /v1/admin/diagnostics``, see
``edgestate/node/diagnostics.py``, ``findings.py`` and ``cluster_findings.py``):
its certificate and cluster, trust policy, disk and map headroom, each peer's reachability and
certificate, per document which replica lacks what, and which member holds
garbage collection back. This command prints the findings, each with what to do
about it. A node that cannot be asked (not running, wrong URL, wrong token) is a
finding too, never a traceback.

Exit status: 0 when nothing is a problem (warnings alone still exit 0), 1 when
any finding is a problem. ``--json`` prints schemas/cli/doctor.schema.json.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import TYPE_CHECKING, Any

import click

from edgestate.cli.options import JSON_OPTION, node_options
from edgestate.cli.output import emit_json

if TYPE_CHECKING:
    from edgestate.client import NodeClient
    from edgestate.errors import EdgestateError

# How long to wait for the node's answer: it asks its connected peers for a
# state-vector exchange and waits up to 3 s for them (node/diagnostics.py), so a
# node that takes longer than this is itself a finding.
DOCTOR_TIMEOUT_S = 20.0

_LABEL = {"ok": "ok", "warn": "WARN", "problem": "PROBLEM"}


def _unreachable(client: NodeClient, exc: EdgestateError) -> dict[str, str]:
    """The finding for a node that could not be asked, with the likely fix."""
    from edgestate.errors import NodeAPIError

    fix = (
        f"check that the node is running (`edgestate node ...`) and that {client.url} is "
        "its API address (--node, or $EDGESTATE_NODE)"
    )
    if isinstance(exc, NodeAPIError):
        if exc.status in (401, 403):
            fix = (
                "give the node's admin token: --token-file DATA/admin.token (or --token, "
                "or $EDGESTATE_TOKEN)"
            )
        elif exc.status == 404:
            fix = "upgrade the node: it has no diagnostics route (GET /v1/admin/diagnostics)"
        else:
            fix = "look at the node's log for why it failed to answer, then run the doctor again"
    return {
        "severity": "problem",
        "check": "node",
        "subject": client.url,
        "what": f"cannot ask the node for its diagnostics: {exc.code}: {exc}",
        "fix": fix,
    }


def run_doctor(client: NodeClient) -> dict[str, Any]:
    """The doctor's report on the node at ``client`` (schemas/cli/doctor.schema.json)."""
    from edgestate.errors import ClientError

    try:
        diagnostics = dataclasses.replace(client, timeout=DOCTOR_TIMEOUT_S).diagnostics()
    except ClientError as exc:
        finding = _unreachable(client, exc)
        return {"node": client.url, "status": "problem", "findings": [finding], "diagnostics": None}
    return {
        "node": client.url,
        "status": diagnostics["status"],
        "findings": diagnostics["findings"],
        "diagnostics": diagnostics,
    }


def _print(report: dict[str, Any]) -> None:
    facts = report["diagnostics"]
    if facts is not None:
        node = facts["node"]
        click.echo(
            f"edgestate doctor: node {node['node_id'][:16]} at {report['node']} "
            f"(cluster {node['cluster_id'][:16]}, replica {node['replica']})"
        )
    else:
        click.echo(f"edgestate doctor: {report['node']}")
    width = max(len(f["check"]) for f in report["findings"])
    for f in report["findings"]:
        label = _LABEL[f["severity"]]
        click.echo(f"{label:<8} {f['check']:<{width}}  {f['subject']}: {f['what']}")
        if f["fix"]:
            click.echo(f"{'':<8} {'':<{width}}  -> {f['fix']}")
    counts = {s: sum(1 for f in report["findings"] if f["severity"] == s) for s in _LABEL}
    click.echo(
        f"{counts['problem']} problems, {counts['warn']} warnings, {counts['ok']} ok"
        + (": exit 1" if counts["problem"] else "")
    )


def _check_url(url: str) -> None:
    """Refuse a --node that is no http(s) URL before anything is dialed."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        port = parts.port  # raises ValueError on a bad one
    except ValueError as exc:
        raise click.BadParameter(f"{url!r} is not a URL: {exc}", param_hint="--node") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise click.BadParameter(
            f"{url!r} is not an http(s) URL of a node's API (e.g. http://127.0.0.1:7474)",
            param_hint="--node",
        )
    del port


@click.command("doctor")
@node_options
@JSON_OPTION
def doctor(client: NodeClient, as_json: bool) -> None:
    """Check a node and every peer it knows; say what to do about each finding.

    Reachability, certificate expiry and cluster, trust policy, disk and LMDB map
    headroom, per document which replica lacks what, and which member holds
    garbage collection back. Exit status 1 if any finding is a problem (warnings
    alone: 0). --json: schemas/cli/doctor.schema.json.
    """
    _check_url(client.url)
    report = run_doctor(client)
    if as_json:
        emit_json(report)
    else:
        _print(report)
    sys.exit(1 if report["status"] == "problem" else 0)


commands = [doctor]
