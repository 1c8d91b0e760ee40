"""``edgestate call NAME``: invoke a module deployed on a running node.

``edgestate invoke`` runs a module file locally, against a data directory; this
sends ``POST /v1/invoke/NAME`` to a node (found like every client command:
--node, $EDGESTATE_NODE, or the node running on --data) and prints the output.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, BinaryIO

import click

from edgestate.cli.options import JSON_OPTION, node_options
from edgestate.cli.output import edge_errors

if TYPE_CHECKING:
    from edgestate.client import NodeClient


@click.command("call")
@click.argument("name")
@click.option("--input", "input_text", help="Input as UTF-8 text.")
@click.option("--input-file", type=click.File("rb"), help="Input from a file ('-': stdin).")
@node_options
@JSON_OPTION
@edge_errors
def call(
    name: str,
    input_text: str | None,
    input_file: BinaryIO | None,
    client: NodeClient,
    as_json: bool,
) -> None:
    """Invoke the deployed module NAME on a node and print its output.

    The output is written as is (bytes); with --json, one object with the output
    (text when it is UTF-8, else hex) and the node's cost headers.
    """
    if input_text is not None and input_file is not None:
        raise click.UsageError("give --input or --input-file, not both")
    payload = input_file.read() if input_file is not None else (input_text or "").encode()
    output, headers = client.invoke(name, payload)
    if as_json:
        try:
            text: str | None = output.decode()
        except UnicodeDecodeError:
            text = None
        costs = {k.lower(): v for k, v in headers.items() if k.lower().startswith("x-edgestate")}
        click.echo(
            json.dumps(
                {"module": name, "text": text, "hex": None if text else output.hex(), **costs},
                sort_keys=True,
            )
        )
        return
    sys.stdout.buffer.write(output)
    if output and not output.endswith(b"\n") and sys.stdout.isatty():
        sys.stdout.buffer.write(b"\n")
    sys.stdout.flush()


commands: list[click.Command] = [call]
