"""Errors of configuration and command-line values.

Part of the tree in ``edgestate.errors`` (its docstring); import from there."""

from __future__ import annotations

import errno
import socket

from edgestate.errors.base import EdgestateError


class ConfigError(EdgestateError):
    """Bad configuration file contents or command-line values."""

    code = "config_error"


class PolicyReloadError(ConfigError):
    """A trust policy reload whose file is missing or invalid: the running policy stays."""

    code = "policy_reload_failed"


class ConfirmationRequiredError(ConfigError):
    """A destructive command (``undeploy``) run without ``--yes`` where nobody can be
    asked: standard input is not a terminal."""

    code = "confirmation_required"


class ForeignDataDirError(ConfigError):
    """A non-empty directory given as a data directory that is not an edgestate one
    (a checkout, a home directory): the node refuses to write its files into it."""

    code = "foreign_data_dir"


class ListenError(ConfigError):
    """A listener (the HTTP API or sync) that cannot bind its host and port: the
    port is in use, needs privileges, or the host is no address of this machine."""

    code = "listen_failed"

    def __init__(self, listener: str, host: str, port: int, reason: str) -> None:
        super().__init__(
            f"cannot listen for {listener} on {host}:{port}: {reason} "
            f"(choose another with --{listener.split()[0].lower()}-port or the config file)"
        )
        self.listener = listener
        self.host = host
        self.port = port

    @classmethod
    def from_os_error(cls, listener: str, host: str, port: int, exc: OSError) -> ListenError:
        """The error for ``exc``, raised by binding ``host:port``, in plain words."""
        reasons = {
            errno.EADDRINUSE: "the port is already in use (another node, or another program)",
            errno.EACCES: "permission denied (ports below 1024 need privileges)",
            errno.EADDRNOTAVAIL: "the host is not an address of this machine",
        }
        if isinstance(exc, socket.gaierror):
            reason = f"cannot resolve the host ({exc.strerror or exc})"
        else:
            reason = reasons.get(exc.errno or 0) or exc.strerror or str(exc)
        return cls(listener, host, port, reason)


class DataDirError(ConfigError):
    """A data directory that cannot be created or written (a file in the way, no
    permission, a read-only file system)."""

    code = "data_dir"


class CommandError(ConfigError):
    """A command's own refusal, for checks that belong to the command line itself (a
    file it would overwrite, a manifest it cannot find), not to a layer below it.
    Its ``code`` is given per refusal (``file_exists``, ``manifest_missing``, ...)."""

    code = "command_failed"

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
