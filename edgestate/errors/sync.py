"""Errors of peer sync: the protocol, connections, the cluster CA, NATS.

Part of the tree in ``edgestate.errors`` (its docstring); import from there."""

from __future__ import annotations

from edgestate.errors.base import EdgestateError


class SyncError(EdgestateError):
    """A failure in peer sync."""

    code = "sync_error"


class ProtocolError(SyncError):
    """A malformed, oversized or unexpected frame from a peer."""

    code = "protocol_error"


class MalformedFrameError(ProtocolError):
    """A frame that is not valid msgpack or does not match its schema."""

    code = "malformed_frame"


class OversizedFrameError(ProtocolError):
    """A frame over the configured size limit."""

    code = "oversized_frame"


class AssemblyBusyError(ProtocolError):
    """Diffs in parts from other peers held the node's whole assembly budget too long.

    Not the peer's fault: its connection is closed "try again later" (1013) and
    the diff comes again by anti-entropy.
    """

    code = "assembly_busy"


class UnexpectedFrameError(ProtocolError):
    """A well-formed frame arriving when the protocol does not allow it."""

    code = "unexpected_frame"


class StalePeerError(ProtocolError):
    """A peer behind history this node garbage-collected: it must resync afresh."""

    code = "stale_replica"


class RateLimitedError(ProtocolError):
    """A peer sending frames (or creating documents) faster than its limits."""

    code = "rate_limited"


class ConnectionDeclinedError(SyncError):
    """A connection this side ends for a reason that is not the peer's fault
    (a duplicate, or ourselves); ``permanent`` stops redialing that address."""

    code = "connection_declined"

    def __init__(self, reason: str, *, permanent: bool = False) -> None:
        super().__init__(reason)
        self.permanent = permanent


class MeshFullError(ConnectionDeclinedError):
    """An inbound link this node does not take: it holds as many as ``sync.max_peers``
    allows (see docs/mesh.md). Closed with 1013; the dialer picks another peer."""

    code = "mesh_full"


class PeerGoneError(SyncError):
    """The peer closed the connection (or it dropped)."""

    code = "peer_gone"


class PeerRefusedError(SyncError):
    """A peer that failed authentication or belongs to another cluster."""

    code = "peer_refused"


class ClusterCAError(SyncError):
    """Cluster CA or node certificate material that is missing or invalid."""

    code = "cluster_ca"


class NatsLinkError(SyncError):
    """The NATS link between sites cannot be set up: no server reachable,
    credentials or TLS refused, or the JetStream stream cannot be created."""

    code = "nats_link"


class NatsTLSError(NatsLinkError):
    """NATS's own TLS handshake failed: the server's certificate is not trusted
    by ``sync.nats.ca_cert``, or the server refused our client certificate
    (none configured, or not issued by a CA it trusts)."""

    code = "nats_tls"


class NatsAuthError(NatsLinkError):
    """The NATS server refused the link's credentials (Authorization Violation):
    wrong user/password, token, nkey or .creds, or none given where required."""

    code = "nats_auth"


class UnknownMemberError(SyncError):
    """A forget of a replica id that is not a cluster member of this node.

    Refused rather than recorded: a typo would otherwise leave a permanent
    entry that refuses, as stale, a replica that never existed yet.
    """

    code = "unknown_member"
