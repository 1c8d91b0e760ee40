"""Entry point of the ``edgestate`` command: a group of subcommands.

Every command module imports only click and the CLI's own light modules at import
time; what a command needs to run (aiohttp, wasmtime, the runtime, the sync
daemon, the node service, cryptography, ...) it imports when it runs, so
``edgestate --version`` or a local ``kv get`` does not pay for the rest.
``tests/cli/test_startup.py`` checks this.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
from collections.abc import Sequence
from typing import Any

import click

import edgestate
from edgestate.cli import (
    admin_cmds,
    author_cmds,
    backup_cmd,
    call_cmd,
    cluster_cmds,
    demo_cmd,
    doctor_cmds,
    inspect_cmds,
    kv_cmds,
    node_cmds,
    rollback_cmds,
    runtime_cmds,
    stop_cmd,
    token_cmds,
    trust_cmds,
)
from edgestate.cli.errors_out import (
    EXIT_BROKEN_PIPE,
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    command_path,
    fail,
)
from edgestate.errors import EdgestateError

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
    call_cmd,
    stop_cmd,
    doctor_cmds,
    rollback_cmds,
)


class EdgestateGroup(click.Group):
    """The ``edgestate`` group: every failure leaves in the one error format.

    click's standalone mode would print its own ``Error: ...`` for usage errors
    and a traceback for anything else; here ``main`` runs the command
    non-standalone and turns whatever escapes into ``error: CODE: message`` (+
    ``hint:``), or JSON under ``--json``, with the exit statuses of
    :mod:`edgestate.cli.errors_out`.
    """

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        argv = list(sys.argv[1:] if args is None else args)
        # Known before parsing, so even a usage error answers in JSON.
        options = argv[: argv.index("--")] if "--" in argv else argv
        as_json = "--json" in options
        try:
            rv = super().main(argv, prog_name, complete_var, standalone_mode=False, **extra)
        except click.UsageError as exc:  # bad options, arguments, values (BadParameter)
            fail(
                "usage",
                exc.format_message(),
                EXIT_USAGE,
                as_json=as_json,
                command=command_path(exc.ctx),
            )
        except click.ClickException as exc:
            code = getattr(exc, "code", None) or "command_failed"
            fail(code, exc.format_message(), exc.exit_code, as_json=as_json)
        except BrokenPipeError:
            # `edgestate kv export DOC | head`: the reader left; not an error of ours.
            # stdout is pointed at /dev/null so the exit's flush cannot fail again.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(EXIT_BROKEN_PIPE)
        except (click.Abort, KeyboardInterrupt):
            # Ctrl-C (a watch ended, a prompt left): no traceback, no message.
            sys.exit(EXIT_INTERRUPTED)
        except EdgestateError as exc:
            fail(exc.code, str(exc), EXIT_ERROR, as_json=as_json)
        except Exception as exc:  # a bug: still one line, the traceback with -v
            if logging.getLogger().isEnabledFor(logging.INFO):
                traceback.print_exc()
            fail("internal_error", f"{type(exc).__name__}: {exc}", EXIT_ERROR, as_json=as_json)
        if not standalone_mode:
            return rv
        sys.exit(rv if isinstance(rv, int) else 0)


@click.group(cls=EdgestateGroup, context_settings={"help_option_names": ["-h", "--help"]})
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
