"""``edgestate cluster nats``: the NATS link of a running node (docs/nats.md).

    edgestate cluster nats [--json]     connected server, stream lag per document, bytes

``--json`` prints what ``GET /v1/admin/nats`` answers
(schemas/cli/nats.schema.json). Registered in the ``cluster`` group by
``edgestate.cli.cluster_cmds``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from edgestate.cli.options import JSON_OPTION, node_options
from edgestate.cli.output import edge_errors, emit_json, emit_table

if TYPE_CHECKING:
    from edgestate.client import NodeClient


@click.command("nats")
@node_options
@JSON_OPTION
@edge_errors
def nats_cmd(client: NodeClient, as_json: bool) -> None:
    """The node's NATS link to other sites: server, stream lag per document, bytes.

    LAG is the stream's last sequence of a document minus the last one this node
    applied: 0 when caught up.
    """
    data = client.nats()
    if as_json:
        emit_json(data)
        return
    if not data.get("enabled"):
        click.echo("no NATS link: the node has no [sync.nats] section (docs/nats.md)")
        return
    state = f"connected to {data['server']}" if data["connected"] else "NOT CONNECTED"
    rows = [
        ["link", state],
        ["servers", ", ".join(data["servers"])],
        ["stream", f"{data['stream']} (last seq {data['stream_last_seq']})"],
        ["acked seq", data["acked_seq"]],
        ["stream lag (messages)", data["consumer_pending"]],
        ["bytes in / out", f"{data['bytes_in']} / {data['bytes_out']}"],
        ["messages in / out", f"{data['messages_in']} / {data['messages_out']}"],
        ["updates published / applied", f"{data['updates_published']} / {data['updates_applied']}"],
        ["refused (not members)", data["refused"]],
        ["reconnects", data["reconnects"]],
        ["last error", _error(data)],
    ]
    if data.get("gateway"):
        rows.insert(1, ["gateway", "yes (publishes its LAN peers' writes)"])
    if data.get("status_error"):
        rows.append(["status", data["status_error"]])
    emit_table(["FIELD", "VALUE"], rows)
    if data["docs"]:
        click.echo("")
        emit_table(
            ["DOCUMENT", "STREAM SEQ", "APPLIED SEQ", "LAG"],
            [[d["doc"], d["stream_seq"], d["acked_seq"], d["lag"]] for d in data["docs"]],
        )
    for sender, reason in data["refused_senders"].items():
        click.echo(f"refused sender {sender}: {reason}")


def _error(data: dict[str, Any]) -> str:
    """``CODE: message`` of the link's failure, as the CLI prints errors."""
    if not data.get("last_error"):
        return "-"
    code = data.get("last_error_code")
    return f"{code}: {data['last_error']}" if code else str(data["last_error"])
