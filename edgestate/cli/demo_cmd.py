"""``edgestate demo``: the command; the cluster it runs is :mod:`edgestate.devkit.demo`."""

from __future__ import annotations

from pathlib import Path

import click

from edgestate.cli.output import edge_errors


@click.command("demo")
@click.option("--nodes", type=click.IntRange(2, 10), default=3, show_default=True)
@click.option("--invocations", type=click.IntRange(1, 100_000), default=300, show_default=True)
@click.option("--concurrency", type=click.IntRange(1, 256), default=16, show_default=True)
@click.option("--no-mdns", is_flag=True, help="Static peers instead of mDNS discovery.")
@click.option(
    "--keep",
    is_flag=True,
    help="Leave the cluster running afterwards; prints its URLs, tokens and how to stop it.",
)
@click.option(
    "--stop",
    "stop_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Stop a cluster kept by --keep in DIR and remove DIR.",
)
@edge_errors
def demo(
    nodes: int,
    invocations: int,
    concurrency: int,
    no_mdns: bool,
    keep: bool,
    stop_dir: Path | None,
) -> None:
    """Run a local cluster end to end and leave nothing behind (unless --keep)."""
    if stop_dir is not None:
        if keep:
            raise click.UsageError("give --keep or --stop DIR, not both")
        from edgestate.devkit.demo_keep import stop_cluster

        stop_cluster(stop_dir)
        return
    # The demo needs nearly everything (runtime, TLS, the client, tomli-w): imported
    # only when it runs.
    from edgestate.devkit.demo import run

    run(nodes, invocations, concurrency, use_mdns=not no_mdns, keep=keep)


commands: list[click.Command] = [demo]
