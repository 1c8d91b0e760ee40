"""``edgestate trust reload``: make a running node reread its trust policy.

    edgestate trust reload --node URL --token T [--json]

The same as sending the node SIGHUP, from anywhere the admin API reaches, and it
answers: what changed, which modules became active, which were unloaded. A
policy file that fails to parse is refused with its error, and the running policy
stays in force.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from edgestate.cli.options import JSON_OPTION, node_options
from edgestate.cli.output import edge_errors, emit_json

if TYPE_CHECKING:
    from edgestate.client import NodeClient


@click.group("trust")
def trust() -> None:
    """The trust policy of a running node."""


@trust.command("reload")
@node_options
@JSON_OPTION
@edge_errors
def reload(client: NodeClient, as_json: bool) -> None:
    """Reread the node's trust policy file and recheck every module against it."""
    result = client.reload_trust_policy()
    if as_json:
        emit_json(result)
        return

    def names(key: str) -> str:
        return ", ".join(result[key]) or "none"

    click.echo(f"trust policy reloaded from {result['path']}")
    click.echo(f"publishers  {names('publishers')}")
    click.echo(f"added {names('added')}; removed {names('removed')}; changed {names('changed')}")
    click.echo(f"modules activated: {names('activated')}; unloaded: {names('unloaded')}")


commands: list[click.Command] = [trust]
