"""Entry point of the ``edgestate`` command: a group of subcommands."""

from __future__ import annotations

import importlib
import logging

import click

import edgestate
from edgestate.cli.store_cmds import commands as store_commands

# Subcommand modules owned by the layers they expose; each defines `commands`.
_COMMAND_MODULES = (
    "edgestate.cli.node_cmds",
    "edgestate.cli.member_cmds",
    "edgestate.cli.runtime_cmds",
    "edgestate.cli.cluster_cmds",
    "edgestate.devkit.demo",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(edgestate.__version__, prog_name="edgestate")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
def cli(verbose: int) -> None:
    """edgestate: local-first state for WebAssembly at the edge."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


for command in store_commands:
    cli.add_command(command)

for module_name in _COMMAND_MODULES:
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        continue
    for command in module.commands:
        cli.add_command(command)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="edgestate")


if __name__ == "__main__":
    main()
