"""Options shared by many commands: where the node is, a data directory, --json.

The node/token/TLS option stack is defined once, in :func:`_node_option_stack`;
:func:`node_options` and :func:`optional_node_options` differ only in whether
``--node`` has a default. Nothing here imports the client until a command runs.
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
    show_default=True,
    help="Data directory (a node's, or a store's).",
)

CREATE_OPTION = click.option("--create", is_flag=True, help="Create DOC if it does not exist.")

DEFAULT_NODE_URL = "http://127.0.0.1:7474"
# The admin token when neither --token nor --token-file is given.
TOKEN_ENV = "EDGESTATE_TOKEN"


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

    --node URL, --token or --token-file (else EDGESTATE_TOKEN), and for a node whose
    API serves HTTPS (api.tls): --cacert, and --cert/--key to authenticate with a
    client certificate of the cluster instead of a token.
    """
    return _with_client(fn, default_url=DEFAULT_NODE_URL)


def optional_node_options(fn: Any) -> Any:
    """Like :func:`node_options`, but ``client`` is None unless --node is given."""
    return _with_client(fn, default_url=None)


def _node_option_stack(default_url: str | None) -> list[Callable[[Any], Any]]:
    return [
        click.option(
            "--node",
            "node_url",
            envvar="EDGESTATE_NODE" if default_url else None,
            default=default_url,
            show_default=default_url is not None,
            help="Base URL of the node's API"
            + ("." if default_url else " (instead of opening --data)."),
        ),
        # No envvar= on --token: click would fill it from EDGESTATE_TOKEN and an
        # explicit --token-file would then lose to the environment.
        click.option(
            "--token",
            help="Admin bearer token. Order: --token, else --token-file, else $EDGESTATE_TOKEN.",
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


def _with_client(fn: Any, default_url: str | None) -> Any:
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
    for option in reversed(_node_option_stack(default_url)):
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
