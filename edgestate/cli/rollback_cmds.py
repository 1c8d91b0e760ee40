"""``edgestate rollback NAME [VERSION]``, and the confirmation ``undeploy`` asks for.

    edgestate rollback counter           back to the version deployed before the active one
    edgestate rollback counter 0.1.0     back to a kept version (``edgestate modules`` lists them)

A rollback goes through the same replicated record as a deploy: the node
addressed verifies the kept bundle under its trust policy as it is now, runs it,
and every other node follows (docs/rollback.md).

Registered in the main group by ``edgestate.cli.main`` from ``commands``.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from edgestate.cli.options import JSON_OPTION, node_options
from edgestate.cli.output import edge_errors, emit_json
from edgestate.errors import ConfirmationRequiredError

if TYPE_CHECKING:
    from edgestate.client import NodeClient


def confirm_removal(name: str, yes: bool) -> bool:
    """Whether removing module ``name`` cluster-wide is confirmed.

    ``--yes`` confirms; otherwise the person at the terminal is asked. With no
    terminal to ask (a script, a pipe) the command refuses rather than guesses.
    """
    if yes:
        return True
    question = f"remove module {name} from every node of the cluster?"
    if sys.stdin is None or not sys.stdin.isatty():
        raise ConfirmationRequiredError(
            f"{question} standard input is not a terminal, so nobody can be asked; "
            "pass --yes to confirm"
        )
    return click.confirm(question, default=False, err=True)


@click.command("rollback")
@click.argument("name")
@click.argument("version", required=False)
@node_options
@JSON_OPTION
@edge_errors
def rollback(name: str, version: str | None, client: NodeClient, as_json: bool) -> None:
    """Roll module NAME back, cluster-wide, to a kept VERSION.

    Without VERSION: the version deployed before the active one. The kept versions
    are listed by `edgestate modules`. The bundle is checked against the node's
    trust policy as it is now: a version whose publisher is no longer trusted
    cannot come back.
    """
    result = client.rollback(name, version)
    if as_json:
        emit_json(result)
        return
    click.echo(
        f"rolled {result['name']} back to {result['version']} "
        f"(sha256 {result['wasm_sha256'][:16]}…, publisher {result['publisher']}); "
        "the other nodes follow"
    )


commands: list[click.Command] = [rollback]
