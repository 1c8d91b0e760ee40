"""Why the NATS link is down, in words an operator can act on.

nats-py reports every failed (re)connection attempt to the client's error
callback as the raw exception it met: an ``ssl.SSLError`` alert, ``'Authorization
Violation'``, a refused connection. ``explain`` names what was wrong and which
setting to check (``NatsTLSError``, ``NatsAuthError``, else ``NatsLinkError``);
``Failures`` keeps the link's status and log on the most telling reason: a
server refusing our client certificate sometimes shows up as a broken pipe on
the next attempt, which must not hide the certificate problem.
"""

from __future__ import annotations

import logging
import ssl

import nats.errors

from edgestate.errors import NatsAuthError, NatsLinkError, NatsTLSError
from edgestate.sync.nats_config import NatsConfig
from edgestate.sync.nats_stats import NatsStats

log = logging.getLogger(__name__)

# Errors that say a connection broke, not why: they keep an earlier, specific reason.
_VAGUE = (
    BrokenPipeError,
    ConnectionResetError,
    ConnectionAbortedError,
    TimeoutError,
    nats.errors.UnexpectedEOF,
    nats.errors.StaleConnectionError,
)


def credentials_of(cfg: NatsConfig) -> str:
    """The credentials the link presents, named by their settings."""
    if cfg.creds_file is not None:
        return f"sync.nats.creds_file {cfg.creds_file}"
    if cfg.nkey_seed_file is not None:
        return f"sync.nats.nkey_seed_file {cfg.nkey_seed_file}"
    if cfg.user is not None:
        return f"sync.nats.user {cfg.user!r} with password_file {cfg.password_file}"
    if cfg.token_file is not None:
        return f"sync.nats.token_file {cfg.token_file}"
    return "no credentials (none set in sync.nats, and the server requires some)"


def explain(exc: BaseException, cfg: NatsConfig) -> NatsLinkError:
    """What ``exc``, met connecting to ``cfg.servers``, means for the operator."""
    servers = ", ".join(cfg.servers)
    text = str(exc)
    if isinstance(exc, nats.errors.AuthorizationError) or "authorization violation" in text.lower():
        return NatsAuthError(
            f"the NATS server at {servers} refused our credentials (Authorization Violation): "
            f"check {credentials_of(cfg)}"
        )
    if isinstance(exc, ssl.SSLCertVerificationError):
        trusted = f"sync.nats.ca_cert {cfg.ca_cert}" if cfg.ca_cert else "the system CAs"
        return NatsTLSError(
            f"the TLS certificate of the NATS server at {servers} is not trusted by {trusted}: "
            f"{exc.verify_message or text}"
        )
    if isinstance(exc, ssl.SSLError):
        reason = exc.reason or text
        if "ALERT" in reason and "CERTIFICATE" in reason:
            # The alert came from the server: it did not accept our certificate.
            ours = (
                "no client certificate is configured (sync.nats.cert and key)"
                if cfg.cert is None
                else f"sync.nats.cert {cfg.cert} is not issued by a CA it trusts"
            )
            return NatsTLSError(
                f"the NATS server at {servers} refused our TLS client certificate "
                f"({reason}): {ours}"
            )
        return NatsTLSError(f"TLS with the NATS server at {servers} failed: {reason}")
    if isinstance(exc, ConnectionRefusedError):
        return NatsLinkError(f"no NATS server listening at {servers} (connection refused)")
    if isinstance(exc, nats.errors.NoServersError):
        return NatsLinkError(f"no NATS server reachable at {servers}")
    return NatsLinkError(f"NATS link to {servers}: {type(exc).__name__}: {text or 'failed'}")


class Failures:
    """The link's last failure: in its status (``last_error``, ``last_error_code``)
    and logged once per distinct reason while the link keeps retrying."""

    def __init__(self, cfg: NatsConfig, stats: NatsStats) -> None:
        self._cfg = cfg
        self._stats = stats
        self._specific: NatsLinkError | None = None
        self._logged: str | None = None

    def seen(self, exc: BaseException) -> NatsLinkError:
        """Record one failed attempt (nats-py's error callback); return what it meant."""
        err = explain(exc, self._cfg)
        if isinstance(exc, _VAGUE) and self._specific is not None:
            return self._specific
        if isinstance(err, NatsTLSError | NatsAuthError) or isinstance(exc, ConnectionRefusedError):
            self._specific = err
        self._stats.last_error, self._stats.last_error_code = str(err), err.code
        if str(err) != self._logged:
            self._logged = str(err)
            log.warning("NATS link down: %s: %s (retrying)", err.code, err)
        return err

    def connected(self) -> None:
        """The link is up: the next failure is news again."""
        self._specific, self._logged = None, None
        self._stats.last_error, self._stats.last_error_code = None, None
