"""Options shared by many commands: where the node is, a data directory, --json.

The node/token/TLS option stack is defined once, in :func:`_node_option_stack`,
and one rule finds the node and the token for every command,
:func:`resolve_client`: --node > $EDGESTATE_NODE > the node running on --data;
--token > --token-file > DATA/admin.token > $EDGESTATE_TOKEN. Nothing here
imports the client until a command runs.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from edgestate.client import NodeClient

JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")

DATA_OPTION = click.option(
    "--data",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("edgestate-data"),
    envvar="EDGESTATE_DATA_DIR",
    show_default=True,
    help="Data directory (a node's, or a store's) [$EDGESTATE_DATA_DIR].",
)

CREATE_OPTION = click.option("--create", is_flag=True, help="Create DOC if it does not exist.")

DEFAULT_NODE_URL = "http://127.0.0.1:7474"
# The admin token when neither --token nor --token-file is given.
TOKEN_ENV = "EDGESTATE_TOKEN"
# The node's URL when --node is not given (every command that talks to a node).
NODE_ENV = "EDGESTATE_NODE"
# The data directory when --data is not given: the variable the node's own
# data_dir setting is read from, so one export serves the node and the CLI.
DATA_ENV = "EDGESTATE_DATA_DIR"


class HostPort(click.ParamType[str]):
    """``HOST:PORT`` (``[IPv6]:PORT``), port 1-65535, checked when the command line is.

    The value stays the text typed: the node's config takes peer addresses as
    strings. The check is the sync layer's own (``parse_address``), with the
    port required, so a stray word is refused here rather than dialed forever.
    """

    name = "host:port"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        # Imported here: edgestate.sync pulls in the daemon, which other commands never need.
        from edgestate.errors import ConfigError
        from edgestate.sync.config import parse_address

        text = str(value)
        try:
            parse_address(text, default_port=None)
        except ConfigError as exc:
            self.fail(str(exc), param, ctx)
        return text


def node_options(fn: Any) -> Any:
    """Where the node is and how to authenticate; the command gets ``client``.

    --node URL (else $EDGESTATE_NODE, else the node running on --data DIR, else
    the default URL); --token or --token-file (else DIR/admin.token, else
    $EDGESTATE_TOKEN); and for a node whose API serves HTTPS (api.tls): --cacert,
    and --cert/--key to authenticate with a client certificate of the cluster
    instead of a token. See :func:`resolve_client`.
    """
    return _with_client(fn, admin=True, follow=True)


def optional_node_options(fn: Any, *, follow: bool = True) -> Any:
    """Like :func:`node_options` for a group that also works on a data directory.

    ``client`` is None (work on the group's ``--data`` directly) unless a node is
    named (--node, $EDGESTATE_NODE) or, with ``follow``, one is running on that
    directory (its writer lock would refuse a local write).
    """
    return _with_client(fn, admin=False, follow=follow)


def read_only_node_options(fn: Any) -> Any:
    """:func:`optional_node_options` for read-only groups: a directory is read directly."""
    return optional_node_options(fn, follow=False)


def _node_option_stack(admin: bool) -> list[Callable[[Any], Any]]:
    stack = [
        click.option(
            "--node",
            "node_url",
            help="Base URL of the node's API [$EDGESTATE_NODE, else the node running on "
            + ("--data, else " + DEFAULT_NODE_URL if admin else "--data")
            + "].",
        ),
        # No envvar= on --token: click would fill it from EDGESTATE_TOKEN and an
        # explicit --token-file would then lose to the environment.
        click.option(
            "--token",
            help="Admin bearer token. Order: --token, --token-file, the --data directory's "
            "admin.token, $EDGESTATE_TOKEN.",
        ),
        click.option(
            "--token-file",
            type=click.Path(dir_okay=False, path_type=Path),
            help="Read the admin token from this file (DATA/admin.token); beats $EDGESTATE_TOKEN.",
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
    if admin:
        stack.append(
            click.option(
                "--data",
                "node_data",
                type=click.Path(file_okay=False, path_type=Path),
                envvar=DATA_ENV,
                help="The node's data directory: its address and admin.token are read there "
                f"[${DATA_ENV}].",
            )
        )
    return stack


def _with_client(fn: Any, *, admin: bool, follow: bool) -> Any:
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
        # The admin commands have a --data of their own; the groups that also work
        # on a directory share theirs (the group's DATA_OPTION).
        data: Path | None = kwargs.pop("node_data") if admin else kwargs.get("data")
        client = resolve_client(
            node_url=node_url,
            token=token,
            token_file=token_file,
            cacert=cacert,
            tls_cert=tls_cert,
            tls_key=tls_key,
            data=data,
            data_named=_named(click.get_current_context(), "node_data" if admin else "data"),
            follow=follow,
            default_url=DEFAULT_NODE_URL if admin else None,
        )
        return fn(*args, client=client, **kwargs)

    wrapped: Any = with_client
    for option in reversed(_node_option_stack(admin)):
        wrapped = option(wrapped)
    return wrapped


def _named(ctx: click.Context, param: str) -> bool:
    """Whether ``param`` was given (flag or environment), not left at its default."""
    source = ctx.get_parameter_source(param)
    return source in (
        click.core.ParameterSource.COMMANDLINE,
        click.core.ParameterSource.ENVIRONMENT,
    )


def resolve_client(
    *,
    node_url: str | None,
    token: str | None,
    token_file: Path | None,
    cacert: str | None = None,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    data: Path | None = None,
    data_named: bool = False,
    follow: bool = True,
    default_url: str | None = None,
) -> NodeClient | None:
    """The one rule every command uses to find its node and token.

    The node: --node, else $EDGESTATE_NODE, else (with ``follow``) the node
    running on ``data`` (recorded in DATA/node.json), else ``default_url``;
    None means "no node: work on the directory". A ``data`` directory named
    explicitly for an admin command (no ``default_url`` fallback wanted) with no
    node running on it is a :class:`NodeUnreachableError` saying so.

    The token: --token, else --token-file, else DATA/admin.token when ``data``
    is a node's directory, else $EDGESTATE_TOKEN. What is typed beats what is
    exported, so a stale exported token cannot override an explicit choice.
    """
    from edgestate.cli.node_address import NODE_FILE, running_node

    url = node_url or os.environ.get(NODE_ENV) or None
    if url is None and data is not None and follow:
        info = running_node(data)
        if info is not None:
            url = info["api"]
        elif data_named and default_url is not None:
            from edgestate.errors import NodeUnreachableError

            raise NodeUnreachableError(
                f"no node is running on {data} (no {data / NODE_FILE} of a live node): start "
                f"one with `edgestate node --data {data}`, or give --node URL"
            )
    url = url or default_url
    if url is None:
        return None
    if token is None and token_file is None and data is not None:
        candidate = data / "admin.token"
        if candidate.is_file():
            token_file = candidate
    return make_client(url, token, token_file, cacert, tls_cert, tls_key)


def make_client(
    node_url: str,
    token: str | None,
    token_file: Path | None = None,
    cacert: str | None = None,
    tls_cert: str | None = None,
    tls_key: str | None = None,
) -> NodeClient:
    """A client for the node; the token is ``token``, else the file's, else $EDGESTATE_TOKEN.

    What is typed on the command line beats the environment, so a stale exported
    token cannot silently override an explicit ``--token-file``. Both options at
    once are refused: which one was meant cannot be known.
    """
    # Imported here: urllib.request and ssl are only needed once a node is addressed.
    from edgestate.client import NodeClient, tls_context

    if token is not None and token_file is not None:
        raise click.UsageError("give --token or --token-file, not both")
    if token is None and token_file is not None:
        try:
            token = token_file.read_text().strip()
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not a text file"
            raise click.BadParameter(
                f"cannot read {token_file}: {reason}", param_hint="--token-file"
            ) from exc
        if not token:
            raise click.BadParameter(f"{token_file} is empty", param_hint="--token-file")
    if token is None:
        token = os.environ.get(TOKEN_ENV) or None
    context = tls_context(cacert, tls_cert, tls_key) if (cacert or tls_cert) else None
    return NodeClient(node_url, token, ssl_context=context)
