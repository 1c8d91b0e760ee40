"""Commands against a running node: status, peers, modules, deploy, undeploy, watch,
members and forget.

    edgestate members [--json]           who this node waits for, and who it forgot
    edgestate forget REPLICA --yes       stop waiting for a member gone for good

Members are keyed by store replica id (``edgestate inspect stats`` shows a data
directory's). A forget made on one node spreads to the others in its reports
(sync protocol version 2), so one command is enough.

Every command takes the shared node options (:func:`edgestate.cli.options.node_options`)
and gets a ``client``; the client and the runtime are imported only when one runs.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from edgestate.cli.errors_out import CommandError
from edgestate.cli.options import JSON_OPTION, node_options
from edgestate.cli.output import edge_errors, emit_json, emit_table, show_value

if TYPE_CHECKING:
    from edgestate.client import NodeClient


@click.command("status")
@node_options
@JSON_OPTION
@edge_errors
def status(
    client: NodeClient,
    as_json: bool,
) -> None:
    """Identity, uptime, modules, peers and store figures of a running node."""
    data = client.status()
    if as_json:
        emit_json(data)
        return
    rows = [
        [k, data[k]]
        for k in (
            "node_id",
            "cluster_id",
            "api",
            "sync_port",
            "uptime_s",
            "ready",
            "documents",
            "modules",
            "peers",
            "connected_peers",
        )
    ]
    if data.get("insecure"):
        rows.append(["insecure", "YES (development only)"])
    emit_table(["FIELD", "VALUE"], rows)
    for refused in data.get("refused_modules", []):
        click.echo(
            f"refused module {refused['name']} {refused['offered_version']}: {refused['error']}"
        )


@click.command("peers")
@node_options
@JSON_OPTION
@edge_errors
def peers_cmd(
    client: NodeClient,
    as_json: bool,
) -> None:
    """Peers of a running node: state, last sync, lag, and why dialing one fails.

    FAILS counts failed dials since the node started; LAST ERROR is the latest
    one (``--json``: schemas/cli/peers.schema.json).
    """
    rows = client.peers()
    if as_json:
        emit_json({"peers": rows})
        return
    now = time.time()
    emit_table(
        ["NODE", "ADDRESS", "SOURCE", "STATE", "LAST SYNC", "LAG", "QUEUED", "FAILS", "LAST ERROR"],
        [
            [
                (r["node_id"] or "?")[:16],
                r["address"] or "-",
                r["source"],
                r["state"],
                f"{now - r['last_sync']:.1f}s ago" if r["last_sync"] else "never",
                r["lag"],
                r["queued"],
                r["failures"],
                r["last_error"] or "-",
            ]
            for r in rows
        ],
    )


@click.command("modules")
@node_options
@JSON_OPTION
@edge_errors
def modules(
    client: NodeClient,
    as_json: bool,
) -> None:
    """Modules deployed on a running node, its verdict on each, and their history.

    HISTORY lists each module's kept versions, newest deploy first, the active one
    marked ``*`` (``--json``: schemas/cli/modules.schema.json).
    """
    rows = client.modules()
    if as_json:
        emit_json({"modules": rows})
        return
    emit_table(
        ["MODULE", "STATE", "VERSION", "OFFERED", "PUBLISHER", "ERROR"],
        [
            [
                r["name"],
                r["state"],
                r["version"] or "-",
                r["offered_version"] or "-",
                r["publisher"] or "-",
                r["error"] or "",
            ]
            for r in rows
        ],
    )
    kept = [(r, h) for r in rows for h in r.get("history", [])]
    if kept:
        click.echo()
        emit_table(
            ["HISTORY", "VERSION", "ACTIVE", "DEPLOYED BY", "DEPLOYED AT (UTC)", "SHA256"],
            [
                [
                    r["name"],
                    h["version"],
                    "*" if h["active"] else "",
                    (h["deployed_by"] or "-")[:24],
                    _utc(h["deployed_at"]),
                    h["wasm_sha256"][:12],
                ]
                for r, h in kept
            ],
        )


def _utc(at: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(at)) if at is not None else "-"


@click.command("deploy")
@click.argument("wasm", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--manifest",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Manifest [NAME.manifest.json beside the wasm].",
)
@click.option(
    "--signature",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Signature [NAME.sig beside the wasm].",
)
@click.option(
    "--allow-downgrade",
    is_flag=True,
    help="Deploy even a version lower than the active one, or the active version with other bytes.",
)
@node_options
@JSON_OPTION
@edge_errors
def deploy(
    wasm: Path,
    manifest: Path | None,
    signature: Path | None,
    allow_downgrade: bool,
    client: NodeClient,
    as_json: bool,
) -> None:
    """Deploy a signed module bundle; it then rolls out to the whole cluster.

    A version lower than the active one (semver order), or the active version
    with other bytes, is refused (module_downgrade, module_version_reused) unless
    --allow-downgrade; to go back to a kept version, `edgestate rollback`.

    A module carrying debug sections, or far larger than its code, is deployed
    with a warning on stderr first (every node syncs those bytes).
    """
    from edgestate.cli.signing import lean_report
    from edgestate.runtime import read_bundle

    lean_report(wasm.read_bytes())
    steps = ["read bundle", "upload and verify", "confirm"]
    result: dict[str, Any] = {}
    with click.progressbar(
        steps, label=f"deploying {wasm.name}", file=sys.stderr, item_show_func=lambda s: s
    ) as bar:
        parts: tuple[bytes, bytes, bytes] = (b"", b"", b"")
        for step in bar:
            if step == "read bundle":
                parts = read_bundle(wasm, manifest, signature)
            elif step == "upload and verify":
                result = client.deploy(*parts, allow_downgrade=allow_downgrade)
            else:
                names = {m["name"] for m in client.modules() if m["state"] == "active"}
                if result["name"] not in names:
                    raise CommandError(
                        "deploy_inactive", f"{result['name']} is not active after deploy"
                    )
    if as_json:
        emit_json(result)
    else:
        click.echo(
            f"deployed {result['name']} {result['version']} "
            f"(sha256 {result['wasm_sha256'][:16]}…, publisher {result['publisher']})"
        )


@click.command("undeploy")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Confirm without being asked.")
@node_options
@edge_errors
def undeploy(
    name: str,
    yes: bool,
    client: NodeClient,
) -> None:
    """Remove a module and its kept versions from the whole cluster.

    Asks first ("[y/N]") unless --yes; with no terminal to ask, refuses
    (confirmation_required). Answering no removes nothing and exits 1.
    """
    from edgestate.cli.rollback_cmds import confirm_removal

    if not confirm_removal(name, yes):
        click.echo(f"not removed: {name}", err=True)
        raise SystemExit(1)
    client.remove(name)
    click.echo(f"removed {name}")


@click.command("watch")
@click.argument("doc")
@click.option("--count", type=click.IntRange(1), help="Stop after this many changes.")
@node_options
@JSON_OPTION
@edge_errors
def watch(
    doc: str,
    count: int | None,
    client: NodeClient,
    as_json: bool,
) -> None:
    """Print live changes to DOC (local writes and those arriving from peers)."""
    seen = 0
    for event in client.watch(doc):
        if as_json:
            click.echo(json.dumps(event))
        else:
            origin = event["origin"] or "local"
            for change in event["changes"]:
                text = show_value(change) if change["found"] else "(deleted)"
                click.echo(
                    f"{time.strftime('%H:%M:%S')} {doc}/{change['key']} = {text}  [{origin}]"
                )
        seen += 1
        if count is not None and seen >= count:
            return


def forget_warning(replica: int) -> str:
    """What forgetting ``replica`` does, said before it is done (and why --yes is needed)."""
    return (
        f"forgetting replica {replica} cannot be undone: garbage collection across the cluster "
        "will stop waiting for that member, and its writes no other member received are "
        "lost to the cluster. If the member comes back it is refused as a stale replica "
        "and must have its data wiped before it can rejoin. Run again with --yes if it "
        "is gone for good."
    )


@click.command("members")
@node_options
@JSON_OPTION
@edge_errors
def members(client: NodeClient, as_json: bool) -> None:
    """Cluster members a running node's garbage collection waits for."""
    data = client.members()
    if as_json:
        emit_json(data)
        return
    emit_table(
        ["REPLICA", "SELF", "DOCS REPORTED"],
        [[m["replica"], "yes" if m["self"] else "", m["documents"]] for m in data["members"]],
    )
    if data["forgotten"]:
        click.echo("forgotten: " + ", ".join(str(r) for r in data["forgotten"]))


@click.command("forget")
@click.argument("replica", type=click.IntRange(min=0))
@click.option("--yes", is_flag=True, help="Confirm: the member is gone for good.")
@node_options
@JSON_OPTION
@edge_errors
def forget(replica: int, yes: bool, client: NodeClient, as_json: bool) -> None:
    """Stop waiting for member REPLICA, gone for good (needs --yes).

    The node addressed tells the others in its next reports; one call is enough.
    REPLICA must be a member this node knows (``edgestate members``); an unknown
    id is refused (unknown_member) and nothing is recorded. Forgetting one
    already forgotten changes nothing.
    """
    if not yes:
        # Refused before the node is even contacted: the step is irreversible.
        raise CommandError("confirmation_required", forget_warning(replica))
    result = client.forget_member(replica)
    if as_json:
        emit_json(result)
        return
    if result["was_member"]:
        click.echo(
            f"forgot member {result['forgotten']}: garbage collection no longer waits for it"
        )
    else:
        click.echo(f"replica {result['forgotten']} was already forgotten; nothing changed")


commands: list[click.Command] = [
    status,
    peers_cmd,
    modules,
    deploy,
    undeploy,
    watch,
    members,
    forget,
]
