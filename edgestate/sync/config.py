"""Configuration of the sync daemon: frozen, keyword-only, every default with its reason."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path

from edgestate.errors import ConfigError
from edgestate.sync.nats_config import NatsConfig

# The default sync port: arbitrary but fixed, so a node's address is easy to guess.
# Static peers still name their port: a stray word is refused, not dialed forever.
DEFAULT_PORT = 7475
# A bounded mesh of more links than a peers frame names (frames.MAX_PEERS) is a
# full mesh in all but name: set 0 instead.
MAX_PEERS_LIMIT = 4096


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """What one peer connection may cost us before it is closed."""

    # A stored value is at most 1 MiB; a handshake diff of a large document can be
    # several, so frames get headroom, but one peer cannot make us buffer more.
    max_frame_bytes: int = 32 << 20
    # A diff (handshake, anti-entropy, resync) carries what a peer lacks of one
    # document, in one frame, and can be as large as the document: documents up to
    # this size replicate. Pushes larger than max_frame_bytes go this way too.
    max_diff_frame_bytes: int = 1 << 30
    # Diffs in parts being reassembled from all peers at once, node-wide: one
    # peer's biggest diff fits, but ~17 links of a bounded mesh cannot each hold one.
    max_assembly_bytes: int = 1 << 30
    # How long a diff in parts waits for room in that budget before its peer is
    # told to try again later (anti-entropy brings it again).
    assembly_wait_s: float = 10.0
    # Frames per second per connection (token bucket). Pushes are coalesced, so an
    # honest peer sends far fewer frames than updates; this only stops floods.
    max_frames_per_s: float = 20_000.0
    frame_burst: int = 40_000
    # Documents one peer may create on this node over one connection, so a
    # misbehaving peer cannot fill the disk with empty documents.
    max_new_documents: int = 10_000
    # Documents named in one state-vector frame.
    max_documents_per_frame: int = 100_000
    # Updates waiting to be pushed to one peer. On overflow the queue is dropped
    # and the peer is resynced from state vectors: memory stays bounded.
    peer_queue: int = 10_000


@dataclass(frozen=True, slots=True, kw_only=True)
class TLSFiles:
    """Paths of this node's cluster material (written by ``edgestate cluster``)."""

    ca_cert: Path
    cert: Path
    key: Path
    # Certificate revocation list signed by the cluster CA; checked at every
    # handshake. Optional only so a CA without revocations need not ship one.
    crl: Path | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SyncConfig:
    """How a node syncs with its peers.

    With no arguments the node listens on 127.0.0.1 only, so it never talks to
    any other network until a deployment opts in with its LAN address.
    """

    host: str = "127.0.0.1"
    # 0 picks an ephemeral port (tests); ``SyncDaemon.port`` reports the bound one.
    port: int = DEFAULT_PORT
    tls: TLSFiles | None = None
    # Plain WebSocket, node id and cluster id taken from this config: for local
    # development only, and the daemon says so loudly at start.
    insecure: bool = False
    node_id: str | None = None
    cluster_id: str = "dev"
    # "host:port" of peers beyond the local network (mDNS does not cross routers).
    static_peers: tuple[str, ...] = ()
    # Documents that never leave this node.
    local_only: frozenset[str] = frozenset()
    mdns: bool = True
    # Pushes are coalesced: a sender drains everything that accumulated while its
    # previous frame was in flight, after waiting this long for more. Zero keeps
    # the latency of a lone write minimal; batching then comes from back-pressure.
    coalesce_s: float = 0.0
    # Anti-entropy with one linked peer (the one exchanged with longest ago, so
    # every link takes its turn) heals anything a push or a relay missed.
    anti_entropy_s: float = 5.0
    # The bounded mesh (docs/mesh.md): a node that knows more peers than this
    # dials half as many (its ring neighbour and random others) and is dialed for
    # the rest: about this many links on average, at most 1.5 times this plus one,
    # relaying what it receives. Each update then crosses ~N*max_peers/2 links
    # instead of N*(N-1)/2. 0 dials every known peer: the full mesh.
    max_peers: int = 8
    # One random link of the bounded mesh is swapped for another this often
    # (jittered): islands that random choice made do not last.
    rotate_s: float = 30.0
    # Reconnect backoff: exponential with full jitter between these bounds.
    backoff_initial_s: float = 0.05
    backoff_max_s: float = 10.0
    # Garbage collection (edgestate.sync.frontier): members' state-vector reports
    # are sent and a stable frontier computed this often...
    gc_round_s: float = 5.0
    # ...from rounds at least this old: far longer than a report takes to cross the
    # cluster, so a member that just joined is heard of before its writes matter.
    gc_grace_s: float = 60.0
    # A peer not seen (no connection, no announcement) for this long is forgotten.
    forget_after_s: float = 300.0
    # WebSocket heartbeat: notices a dead peer whose TCP connection lingers.
    heartbeat_s: float = 15.0
    limits: Limits = field(default_factory=Limits)
    # Sites beyond the LAN, joined through NATS (edgestate.sync.nats_link); off if unset.
    nats: NatsConfig | None = None

    def __post_init__(self) -> None:
        if self.tls is None and not self.insecure:
            raise ConfigError(
                "sync needs cluster TLS material (SyncConfig.tls); create it with "
                "`edgestate cluster init` and `edgestate cluster issue NODE`, or set "
                "insecure=True for local development"
            )
        if self.insecure and self.tls is not None:
            raise ConfigError("insecure mode and TLS material are mutually exclusive")
        for peer in self.static_peers:
            parse_address(peer, default_port=None)
        if isinstance(self.max_peers, bool) or not isinstance(self.max_peers, int):
            raise ConfigError(f"sync.max_peers must be a whole number, not {self.max_peers!r}")
        if not 0 <= self.max_peers <= MAX_PEERS_LIMIT:
            raise ConfigError(
                f"sync.max_peers must be 0 (full mesh) to {MAX_PEERS_LIMIT}, not {self.max_peers}"
            )
        if not self.rotate_s > 0:
            raise ConfigError(f"sync.rotate_s must be above 0 seconds, not {self.rotate_s!r}")


# A host name (RFC 1123 labels; underscores too, as some LAN names have them) or an
# IPv4 address; IPv6 comes in brackets. Anything else ("http://x", "a b", "x/y")
# is a typo that would otherwise only show as failed dials.
_HOST_NAME = re.compile(
    r"(?=.{1,253}$)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
    r"(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*\.?"
)


def parse_address(text: str, *, default_port: int | None = DEFAULT_PORT) -> tuple[str, int]:
    """Split ``host:port`` (``[v6]:port`` too) into a checked host and a port 1-65535.

    Without a port, ``default_port`` is used; ``default_port=None`` requires one
    (the ``--peer`` option does, so that a stray word is not taken for a host).
    """
    if "://" in text:
        raise ConfigError(f"bad peer address {text!r}: give host:port, not a URL")
    if text.startswith("["):
        host, closed, rest = text[1:].partition("]")
        if not closed or (rest and not rest.startswith(":")):
            raise ConfigError(f"bad peer address {text!r}: expected [IPv6]:port")
        port = rest.removeprefix(":") or None
        try:
            ipaddress.IPv6Address(host)
        except ValueError as exc:
            raise ConfigError(f"bad peer address {text!r}: {host!r} is no IPv6 address") from exc
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    elif text.count(":") > 1:
        raise ConfigError(f"bad peer address {text!r}: write an IPv6 address as [ADDRESS]:PORT")
    else:
        host, port = text, None
    if not host:
        raise ConfigError(f"bad peer address {text!r}: expected host:port, the host is missing")
    if not text.startswith("[") and not _HOST_NAME.fullmatch(host):
        raise ConfigError(f"bad peer address {text!r}: {host!r} is not a host name or IP address")
    if port is None:
        if default_port is None:
            raise ConfigError(f"bad peer address {text!r}: expected host:port, the port is missing")
        return host, default_port
    if not port.isascii() or not port.isdigit():
        raise ConfigError(f"bad peer address {text!r}: port {port!r} is not a number")
    number = int(port)
    if not 0 < number < 65536:
        raise ConfigError(f"bad peer address {text!r}: port {number} is not in 1-65535")
    return host, number
