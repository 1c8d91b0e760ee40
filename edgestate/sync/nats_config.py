"""Configuration of the NATS link between sites (``[sync.nats]``; docs/nats.md)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from edgestate.errors import ConfigError

# A JetStream stream name: no whitespace, dots, wildcards or path separators.
_STREAM_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
# NATS's own default client port, for a server URL that names none.
NATS_DEFAULT_PORT = 4222


@dataclass(frozen=True, slots=True, kw_only=True)
class NatsConfig:
    """How a node reaches the NATS servers that join its site to the others.

    Secrets (password, token, a ``.creds`` file) are read from files, never
    written in the config: the config file is not a secret store.
    """

    # nats://host:port or tls://host:port of the servers (one cluster or leaf node);
    # the client reconnects among them.
    servers: tuple[str, ...] = ()
    # Credentials: a NATS .creds file (JWT + nkey), or user with password_file,
    # or token_file, or nkey_seed_file (an nkey user's seed, "SU..."). Exclusive
    # with each other.
    creds_file: Path | None = None
    nkey_seed_file: Path | None = None
    user: str | None = None
    password_file: Path | None = None
    token_file: Path | None = None
    # NATS's own TLS (server verification, optional client certificate): separate
    # from the cluster CA, which still authenticates every message.
    ca_cert: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    # The JetStream stream holding the update log; "" derives EDGESTATE_<cluster>.
    stream: str = ""
    # Stream replicas: 3 on a 3-server cluster survives one server lost.
    replicas: int = 1
    # Retention: a site cut off longer than this (or than max_bytes of traffic)
    # misses part of the log and heals by state-vector anti-entropy instead.
    max_age_s: float = 7 * 24 * 3600.0
    max_bytes: int = 1 << 30
    # A gateway publishes what its LAN peers wrote too, so one node per site may
    # carry the site's traffic; otherwise each node publishes only its own writes.
    gateway: bool = False
    # State-vector anti-entropy over request/reply: at connect, after each
    # reconnect, and this often. Replies are collected for answer_window_s.
    anti_entropy_s: float = 30.0
    answer_window_s: float = 2.0
    # Updates kept for publishing while the link is down; beyond, they are dropped
    # and reach the other sites through their anti-entropy requests instead.
    max_pending_bytes: int = 64 << 20
    connect_timeout_s: float = 5.0
    # Publishes wait this long to gather more updates into one message. Each
    # message costs ~250 bytes beyond its updates (signature, subject, the
    # consumer's ack subject), paid again by every site replaying it: a WAN with
    # trickling writes trades this much latency for bytes (docs/nats.md).
    coalesce_s: float = 0.0

    def __post_init__(self) -> None:
        if not self.servers:
            raise ConfigError("sync.nats.servers is empty: name at least one nats://host:port")
        for server in self.servers:
            check_server_url(server)
        secrets = [
            name
            for name, value in (
                ("creds_file", self.creds_file),
                ("user", self.user),
                ("token_file", self.token_file),
                ("nkey_seed_file", self.nkey_seed_file),
            )
            if value is not None
        ]
        if len(secrets) > 1:
            raise ConfigError(f"sync.nats: {' and '.join(secrets)} are mutually exclusive")
        if (self.user is None) != (self.password_file is None):
            raise ConfigError("sync.nats.user and sync.nats.password_file go together")
        if (self.cert is None) != (self.key is None):
            raise ConfigError("sync.nats.cert and sync.nats.key go together")
        if self.stream and not _STREAM_NAME.fullmatch(self.stream):
            raise ConfigError(
                f"sync.nats.stream {self.stream!r} is not a stream name (1-64 of A-Z a-z 0-9 _ -)"
            )
        if not 1 <= self.replicas <= 5:
            raise ConfigError(f"sync.nats.replicas must be 1-5 (JetStream), got {self.replicas}")
        for name in ("max_age_s", "anti_entropy_s", "answer_window_s", "connect_timeout_s"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"sync.nats.{name} must be positive, got {getattr(self, name)}")
        if not 0 <= self.coalesce_s <= 10:
            raise ConfigError(f"sync.nats.coalesce_s must be 0-10 s, got {self.coalesce_s}")
        for name in ("max_bytes", "max_pending_bytes"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"sync.nats.{name} must be positive, got {getattr(self, name)}")

    @property
    def tls(self) -> bool:
        """Whether the link uses TLS (a CA, a client certificate or a tls:// URL)."""
        return (
            self.ca_cert is not None
            or self.cert is not None
            or any(s.startswith("tls://") for s in self.servers)
        )


def check_server_url(text: str) -> None:
    """Refuse a server URL that is not nats://host[:port] or tls://host[:port]."""
    try:
        url = urlsplit(text)
        port = url.port
    except ValueError as exc:
        raise ConfigError(f"bad NATS server {text!r}: {exc}") from exc
    if url.scheme not in ("nats", "tls") or not url.hostname:
        raise ConfigError(f"bad NATS server {text!r}: expected nats://host:port or tls://host:port")
    if url.path not in ("", "/") or url.query or url.fragment:
        raise ConfigError(f"bad NATS server {text!r}: a server URL has no path or query")
    if url.username or url.password:
        raise ConfigError(
            f"bad NATS server {text!r}: put credentials in sync.nats "
            "(user + password_file, token_file or creds_file), not in the URL"
        )
    if port == 0:
        raise ConfigError(f"bad NATS server {text!r}: port 0")
