"""``edgestate members`` and ``edgestate forget``: the cluster members garbage collection waits for.

    edgestate members [--json]           who this node waits for, and who it forgot
    edgestate forget REPLICA --yes       stop waiting for a member gone for good

Members are keyed by store replica id (``edgestate inspect stats`` shows a data
directory's). A forget made on one node spreads to the others in its reports
(sync protocol version 2), so one command is enough. Registered in the main group by
``edgestate.cli.main`` from ``commands``.
"""

from __future__ import annotations

import click

from edgestate.cli.node_cmds import JSON_OPTION, node_options
from edgestate.cli.output import edge_errors, emit_json, emit_table
from edgestate.client import NodeClient


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
    """
    if not yes:
        # Refused before the node is even contacted: the step is irreversible.
        raise click.ClickException(forget_warning(replica))
    result = client.forget_member(replica)
    if as_json:
        emit_json(result)
        return
    if result["was_member"]:
        click.echo(
            f"forgot member {result['forgotten']}: garbage collection no longer waits for it"
        )
    else:
        click.echo(
            f"replica {result['forgotten']} was not a member; garbage collection will not "
            "wait for it should it appear"
        )


commands: list[click.Command] = [members, forget]
