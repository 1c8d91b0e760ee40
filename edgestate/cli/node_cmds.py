"""``edgestate node``: run a node, with its log format (text or JSON lines).

The commands that talk to a running node are in :mod:`edgestate.cli.admin_cmds`.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from edgestate.cli.options import HostPort
from edgestate.cli.output import edge_errors

if TYPE_CHECKING:
    import asyncio

    from edgestate.node import Node

log = logging.getLogger("edgestate")

SWITCH_INTERVAL_S = float(os.environ.get("EDGESTATE_SWITCH_INTERVAL_S", "0.0002"))


@click.command("node")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="EDGESTATE_CONFIG",
    help="TOML config file (schema: schemas/config.schema.json) [env EDGESTATE_CONFIG]. "
    "Precedence: flag > EDGESTATE_* variable > file > default.",
)
@click.option("--data", "data_dir", type=click.Path(file_okay=False), help="Data directory.")
@click.option("--api-host", help="API listen address [127.0.0.1].")
@click.option("--api-port", type=click.IntRange(0, 65535), help="API port [7474]; 0 = any.")
@click.option("--sync-host", help="Sync listen address [127.0.0.1].")
@click.option("--sync-port", type=click.IntRange(0, 65535), help="Sync port [7475]; 0 = any.")
@click.option(
    "--workers",
    type=click.IntRange(0, 256),
    help="Invocation worker processes [number of cores]; 0 = in the node process.",
)
@click.option(
    "--peer",
    "peers",
    multiple=True,
    type=HostPort(),
    help="Static peer HOST:PORT or [IPv6]:PORT, port 1-65535 (repeatable).",
)
@click.option("--no-mdns", is_flag=True, help="Do not discover peers by mDNS.")
@click.option("--trust-policy", type=click.Path(dir_okay=False), help="Trust policy JSON.")
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    help="Log line format [text]; json: one object a line (docs/observability.md).",
)
@click.option(
    "--access-log",
    is_flag=True,
    default=None,
    help="Log one line per API request (api.access_log).",
)
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]))
@click.option(
    "--new-store",
    is_flag=True,
    help="Begin with a new, empty store where this data directory's store is missing or "
    "empty (its data is gone: the node gets a new replica id). Without it such a start "
    "is refused.",
)
@click.option(
    "--ready-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Once the API and sync listen, write the node's API URL, sync port, node id and "
    "pid here as JSON (atomically); removed on a clean stop. DATA/node.json gets the "
    "same either way, and $NOTIFY_SOCKET (systemd Type=notify) gets READY=1.",
)
@edge_errors
def node(
    config_path: Path | None,
    data_dir: str | None,
    api_host: str | None,
    api_port: int | None,
    sync_host: str | None,
    sync_port: int | None,
    workers: int | None,
    peers: tuple[str, ...],
    no_mdns: bool,
    trust_policy: str | None,
    log_format: str | None,
    log_level: str | None,
    access_log: bool | None,
    new_store: bool,
    ready_file: Path | None,
) -> None:
    """Run a node: store, runtime, sync and HTTP API, until SIGTERM or SIGINT.

    SIGHUP rereads the trust policy (as `edgestate trust reload` does).

    The first signal stops accepting, lets in-flight invocations finish and closes
    cleanly; a second exits at once. Acknowledged writes survive either way (they
    were fsynced before they were acknowledged).
    """
    overrides: dict[str, Any] = {
        "data_dir": data_dir,
        "api.host": api_host,
        "api.port": api_port,
        "api.workers": workers,
        "sync.host": sync_host,
        "sync.port": sync_port,
        "sync.static_peers": list(peers) if peers else None,
        "sync.mdns": False if no_mdns else None,
        "trust_policy": trust_policy,
        "log_format": log_format,
        "log_level": log_level,
        "api.access_log": access_log,
    }
    # Imported here: the node's config pulls in the runtime and sync settings, and
    # asyncio is only needed to serve; other commands start without them.
    import asyncio

    from edgestate.node.config import load_config
    from edgestate.node.event_loop import loop_factory
    from edgestate.node.logs import setup_logging

    config = load_config(config_path, overrides)
    setup_logging(config.log_format, config.log_level)
    # The store's writer thread releases the GIL for every fsync and must get it
    # back promptly to acknowledge the group; with the default 5 ms switch
    # interval a busy event loop holds it that long each time (measured: 245 vs
    # 3,360 commits/s beside a busy thread at 5 ms vs 0.2 ms).
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    # The node's loop relays every Yjs update and sync frame: uvloop (when
    # installed) cut a relay through two nodes by ~0.1 ms a hop (docs/yjs.md).
    with asyncio.Runner(loop_factory=loop_factory(config.api.event_loop)) as runner:
        runner.run(_serve(config, ready_file, new_store))


async def _serve(config: Any, ready_file: Path | None, new_store: bool) -> None:
    import asyncio

    from edgestate.node import Node

    loop = asyncio.get_running_loop()
    log.info("event loop: %s", type(loop).__module__.split(".")[0])
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
    # SIGHUP rereads the trust policy. Handled from the start: its default action
    # would kill the node, and one that arrives while starting is served once ready.
    reload_requested = asyncio.Event()
    loop.add_signal_handler(signal.SIGHUP, reload_requested.set)
    async with Node(config, new_store=new_store) as node:
        reloader = asyncio.create_task(_reload_on_sighup(node, reload_requested))
        try:
            await _run(node, ready_file, stop)
        finally:
            reloader.cancel()
            await asyncio.wait([reloader])


async def _reload_on_sighup(node: Node, requested: asyncio.Event) -> None:
    from edgestate.errors import EdgestateError

    while True:
        await requested.wait()
        requested.clear()
        log.info("SIGHUP: rereading the trust policy")
        try:
            await node.reload_trust_policy()
        except EdgestateError:
            pass  # logged by the reload; the running policy stays


async def _run(node: Node, ready_file: Path | None, stop: asyncio.Event) -> None:
    from edgestate.cli.readiness import announced

    info = {
        "api": node.api_url,
        "sync_port": node.sync.port,
        "node_id": node.sync.node_id,
        "pid": os.getpid(),
    }
    # Withdrawn before the node closes: whoever reads the files must not be sent
    # to a node that is already draining.
    with announced(node.config.data_dir, info, ready_file):
        await stop.wait()


commands: list[click.Command] = [node]
