"""Entry point of the ``edgestate`` command: a group of subcommands.

Every command module imports only click and the CLI's own light modules at import
time; what a command needs to run (aiohttp, wasmtime, the runtime, the sync
daemon, the node service, cryptography, ...) it imports when it runs, so
``edgestate --version`` or a local ``kv get`` does not pay for the rest.
``tests/cli/test_startup.py`` checks this.
"""

from __future__ import annotations

import logging

import click

import edgestate
from edgestate.cli import (
    admin_cmds,
    author_cmds,
    backup_cmd,
    cluster_cmds,
    demo_cmd,
    doctor_cmds,
    inspect_cmds,
    kv_cmds,
    node_cmds,
    rollback_cmds,
    runtime_cmds,
    token_cmds,
    trust_cmds,
)

_COMMAND_MODULES = (
    inspect_cmds,
    kv_cmds,
    node_cmds,
    admin_cmds,
    backup_cmd,
    runtime_cmds,
    cluster_cmds,
    trust_cmds,
    demo_cmd,
    token_cmds,
    author_cmds,
    doctor_cmds,
    rollback_cmds,
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(edgestate.__version__, prog_name="edgestate")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
def cli(verbose: int) -> None:
    """edgestate: local-first state for WebAssembly at the edge."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


for module in _COMMAND_MODULES:
    for command in module.commands:
        cli.add_command(command)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="edgestate")


if __name__ == "__main__":
    main()
