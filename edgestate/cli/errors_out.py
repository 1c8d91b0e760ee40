"""How every command reports a failure, and its exit status.

One format, whatever failed (an ``edgestate.errors`` class, a usage error of
click's, an interrupt, a bug)::

    error: CODE: message          on stderr
    hint: what to do about it     on stderr, when there is something to say

and under ``--json`` one document on stdout instead,
``{"error": {"code": CODE, "message": ..., "hint": ... | null}}``.

Exit statuses (docs/cli.md):

====  ===========================================================================
0     done
1     an error (its code says which)
2     usage: a bad option, argument or value (click's checks, and ours)
3     not found: ``kv get``/``inspect get`` of an absent key, ``kv delete`` of one
130   interrupted (Ctrl-C); ``watch`` ends so without a traceback
141   stdout was closed by its reader (``| head``), quietly
====  ===========================================================================
"""

from __future__ import annotations

import json
import sys

import click

# Re-exported: the commands raise it from here (it lives in the one error tree).
from edgestate.errors import CommandError as CommandError

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for Ctrl-C
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: the reader of stdout went away (`| head`)

# What to do about the commonest failures; an error without a hint has nothing
# generic worth saying beyond its message.
HINTS: dict[str, str] = {
    "usage": "see `edgestate {command} --help`",
    "unreachable": "is the node running? start one with `edgestate node --data DIR`, then "
    "give --data DIR, --node URL or $EDGESTATE_NODE",
    "forbidden": "give the node's admin token: --data DIR (reads DIR/admin.token), "
    "--token-file DIR/admin.token or $EDGESTATE_TOKEN",
    "unauthorized": "give the node's admin token: --data DIR (reads DIR/admin.token), "
    "--token-file DIR/admin.token or $EDGESTATE_TOKEN",
    "store_locked": "a node is running on this directory: stop it, or go through it "
    "(--node URL, or --data DIR once it records DIR/node.json)",
    "store_missing": "no store here yet: start a node on it (`edgestate node --data DIR`) or "
    "check --data / $EDGESTATE_DATA_DIR",
    "untrusted_publisher": "trust the publisher's key: add it to the trust policy "
    "(docs/trust-policy.md), then `edgestate trust reload`",
    "not_found": "",
    "interrupted": "",
    "internal_error": "this is a bug; run again with -v for details and report it",
}


def hint_for(code: str, command: str) -> str | None:
    """The hint line for ``code`` (None when there is none)."""
    text = HINTS.get(code, "")
    return text.replace("{command}", command) if text else None


def report(code: str, message: str, *, as_json: bool, command: str = "COMMAND") -> None:
    """Print one failure in the one format (see the module docstring)."""
    hint = hint_for(code, command)
    if as_json:
        click.echo(json.dumps({"error": {"code": code, "message": message, "hint": hint}}))
        return
    click.echo(f"error: {code}: {message}", err=True)
    if hint:
        click.echo(f"hint: {hint}", err=True)


def fail(code: str, message: str, status: int, *, as_json: bool, command: str = "COMMAND") -> None:
    """Report a failure and exit with ``status``."""
    report(code, message, as_json=as_json, command=command)
    sys.exit(status)


def wants_json(ctx: click.Context | None = None) -> bool:
    """Whether the command being run was given --json (its own or a parent's)."""
    ctx = ctx or click.get_current_context(silent=True)
    while ctx is not None:
        if ctx.params.get("as_json"):
            return True
        ctx = ctx.parent
    return False


def command_path(ctx: click.Context | None) -> str:
    """``kv get`` for the running subcommand (for hints), without the program name."""
    if ctx is None:
        return "COMMAND"
    parts = ctx.command_path.split(" ")[1:]
    return " ".join(parts) or "COMMAND"
