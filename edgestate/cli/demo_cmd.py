"""``edgestate demo``: the command; the cluster it runs is :mod:`edgestate.devkit.demo`."""

from __future__ import annotations

import click


@click.command("demo")
@click.option("--nodes", type=click.IntRange(2, 10), default=3, show_default=True)
@click.option("--invocations", type=click.IntRange(1, 100_000), default=300, show_default=True)
@click.option("--concurrency", type=click.IntRange(1, 256), default=16, show_default=True)
@click.option("--no-mdns", is_flag=True, help="Static peers instead of mDNS discovery.")
def demo(nodes: int, invocations: int, concurrency: int, no_mdns: bool) -> None:
    """Run a local cluster end to end and leave nothing behind."""
    # The demo needs nearly everything (runtime, TLS, the client, tomli-w): imported
    # only when it runs.
    from edgestate.devkit.demo import run

    run(nodes, invocations, concurrency, use_mdns=not no_mdns)


commands: list[click.Command] = [demo]
