"""``edgestate node`` (run a node) and the commands that talk to a running one."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import click

from edgestate.cli.output import edge_errors, emit_json, emit_table, show_value
from edgestate.client import NodeClient, tls_context
from edgestate.node.config import load_config

log = logging.getLogger("edgestate")

SWITCH_INTERVAL_S = float(os.environ.get("EDGESTATE_SWITCH_INTERVAL_S", "0.0002"))


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message (+ exception)."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": round(record.created, 6),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out)


def setup_logging(fmt: str, level: str) -> None:
    """Human-readable lines by default, JSON lines with ``--log-format json``."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonLogFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


@click.command("node")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="TOML config file (schema: schemas/config.schema.json).",
)
@click.option("--data", "data_dir", type=click.Path(file_okay=False), help="Data directory.")
@click.option("--api-host", help="API listen address [127.0.0.1].")
@click.option("--api-port", type=click.IntRange(0, 65535), help="API port [7474]; 0 = any.")
@click.option("--sync-host", help="Sync listen address [127.0.0.1].")
@click.option("--sync-port", type=click.IntRange(0, 65535), help="Sync port [7475]; 0 = any.")
@click.option("--peer", "peers", multiple=True, help="Static peer HOST:PORT (repeatable).")
@click.option("--no-mdns", is_flag=True, help="Do not discover peers by mDNS.")
@click.option("--trust-policy", type=click.Path(dir_okay=False), help="Trust policy JSON.")
@click.option("--log-format", type=click.Choice(["text", "json"]), help="Log line format.")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]))
@click.option(
    "--ready-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the node's API URL and sync port here once it is ready.",
)
@edge_errors
def node(
    config_path: Path | None,
    data_dir: str | None,
    api_host: str | None,
    api_port: int | None,
    sync_host: str | None,
    sync_port: int | None,
    peers: tuple[str, ...],
    no_mdns: bool,
    trust_policy: str | None,
    log_format: str | None,
    log_level: str | None,
    ready_file: Path | None,
) -> None:
    """Run a node: store, runtime, sync and HTTP API, until SIGTERM or SIGINT.

    The first signal stops accepting, lets in-flight invocations finish and closes
    cleanly; a second exits at once. Acknowledged writes survive either way (they
    were fsynced before they were acknowledged).
    """
    overrides: dict[str, Any] = {
        "data_dir": data_dir,
        "api.host": api_host,
        "api.port": api_port,
        "sync.host": sync_host,
        "sync.port": sync_port,
        "sync.static_peers": list(peers) if peers else None,
        "sync.mdns": False if no_mdns else None,
        "trust_policy": trust_policy,
        "log_format": log_format,
        "log_level": log_level,
    }
    config = load_config(config_path, overrides)
    setup_logging(config.log_format, config.log_level)
    # The store's writer thread releases the GIL for every fsync and must get it
    # back promptly to acknowledge the group; with the default 5 ms switch
    # interval a busy event loop holds it that long each time (measured: 245 vs
    # 3,360 commits/s beside a busy thread at 5 ms vs 0.2 ms).
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    asyncio.run(_serve(config, ready_file))


async def _serve(config: Any, ready_file: Path | None) -> None:
    from edgestate.node import Node

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = 0

    def on_signal(signum: int) -> None:
        nonlocal signals
        signals += 1
        if signals == 1:
            log.info(
                "%s: shutting down gracefully (again to exit at once)", signal.Signals(signum).name
            )
            stop.set()
        else:
            log.warning("second signal: exiting now")
            os._exit(130)

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    async with Node(config) as node:
        if ready_file is not None:
            tmp = ready_file.with_suffix(".tmp")
            tmp.write_text(
                json.dumps(
                    {
                        "api": node.api_url,
                        "sync_port": node.sync.port,
                        "node_id": node.sync.node_id,
                        "pid": os.getpid(),
                    }
                )
            )
            tmp.replace(ready_file)
        await stop.wait()


# --- commands against a running node ----------------------------------------------------


def node_options(fn: Any) -> Any:
    """Where the node is and how to authenticate; the command gets ``client``.

    --node URL, --token (or EDGESTATE_TOKEN) or --token-file, and for a node whose
    API serves HTTPS (api.tls): --cacert, and --cert/--key to authenticate with a
    client certificate of the cluster instead of a token.
    """
    return _with_client(fn, default_url="http://127.0.0.1:7474")


def optional_node_options(fn: Any) -> Any:
    """Like :func:`node_options`, but ``client`` is None unless --node is given."""
    return _with_client(fn, default_url=None)


def _with_client(fn: Any, default_url: str | None) -> Any:
    options = [
        click.option(
            "--node",
            "node_url",
            envvar="EDGESTATE_NODE" if default_url else None,
            default=default_url,
            show_default=default_url is not None,
            help="Base URL of the node's API"
            + ("." if default_url else " (instead of opening --data)."),
        ),
        click.option("--token", envvar="EDGESTATE_TOKEN", help="Admin bearer token."),
        click.option(
            "--token-file",
            type=click.Path(dir_okay=False, path_type=Path),
            help="Read the admin token from this file (DATA/admin.token).",
        ),
        click.option(
            "--cacert",
            type=click.Path(exists=True, dir_okay=False),
            help="Cluster CA certificate, to verify an https node.",
        ),
        click.option(
            "--cert",
            "tls_cert",
            type=click.Path(exists=True, dir_okay=False),
            help="Client certificate of the cluster (admin without a token).",
        ),
        click.option(
            "--key",
            "tls_key",
            type=click.Path(exists=True, dir_okay=False),
            help="Private key of --cert.",
        ),
    ]

    @functools.wraps(fn)
    def with_client(
        *args: Any,
        node_url: str | None,
        token: str | None,
        token_file: Path | None,
        cacert: str | None,
        tls_cert: str | None,
        tls_key: str | None,
        **kwargs: Any,
    ) -> Any:
        client = (
            make_client(node_url, token, token_file, cacert, tls_cert, tls_key)
            if node_url
            else None
        )
        return fn(*args, client=client, **kwargs)

    wrapped: Any = with_client
    for option in reversed(options):
        wrapped = option(wrapped)
    return wrapped


def make_client(
    node_url: str,
    token: str | None,
    token_file: Path | None = None,
    cacert: str | None = None,
    tls_cert: str | None = None,
    tls_key: str | None = None,
) -> NodeClient:
    """A client for the node, reading the token file if given."""
    if token is None and token_file is not None:
        try:
            token = token_file.read_text().strip()
        except OSError as exc:
            raise click.BadParameter(
                f"cannot read {token_file}: {exc.strerror}", param_hint="--token-file"
            ) from exc
    context = tls_context(cacert, tls_cert, tls_key) if (cacert or tls_cert) else None
    return NodeClient(node_url, token, ssl_context=context)


JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")


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
    """Peers of a running node: state, last sync, lag."""
    rows = client.peers()
    if as_json:
        emit_json({"peers": rows})
        return
    now = time.time()
    emit_table(
        ["NODE", "ADDRESS", "SOURCE", "STATE", "LAST SYNC", "LAG", "QUEUED"],
        [
            [
                (r["node_id"] or "?")[:16],
                r["address"] or "-",
                r["source"],
                r["state"],
                f"{now - r['last_sync']:.1f}s ago" if r["last_sync"] else "never",
                r["lag"],
                r["queued"],
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
    """Modules deployed on a running node and its verdict on each."""
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
@node_options
@JSON_OPTION
@edge_errors
def deploy(
    wasm: Path,
    manifest: Path | None,
    signature: Path | None,
    client: NodeClient,
    as_json: bool,
) -> None:
    """Deploy a signed module bundle; it then rolls out to the whole cluster."""
    from edgestate.runtime import read_bundle

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
                result = client.deploy(*parts)
            else:
                names = {m["name"] for m in client.modules() if m["state"] == "active"}
                if result["name"] not in names:
                    raise click.ClickException(f"{result['name']} is not active after deploy")
    if as_json:
        emit_json(result)
    else:
        click.echo(
            f"deployed {result['name']} {result['version']} "
            f"(sha256 {result['wasm_sha256'][:16]}…, publisher {result['publisher']})"
        )


@click.command("undeploy")
@click.argument("name")
@node_options
@edge_errors
def undeploy(
    name: str,
    client: NodeClient,
) -> None:
    """Remove a module from the whole cluster."""
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


commands: list[click.Command] = [node, status, peers_cmd, modules, deploy, undeploy, watch]
