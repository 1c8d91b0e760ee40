"""What a peer's frames must pass before a connection acts on them: the hello
check (version, cluster, certificate, not ourselves), the per-peer frame rate
budget and the frame size limits, before and after the hello.

Pure checks on values, raising the ``edgestate.errors`` class that names the
fault; ``PeerConnection`` applies them and turns each fault into a close code.
"""

from __future__ import annotations

import time

from edgestate.errors import (
    ConnectionDeclinedError,
    OversizedFrameError,
    PeerRefusedError,
    RateLimitedError,
)
from edgestate.sync import frames
from edgestate.sync.config import Limits
from edgestate.sync.frames import Hello
from edgestate.sync.tls import fingerprint

__all__ = ["PRE_HELLO_MAX_BYTES", "FrameBudget", "check_frame_size", "check_hello"]

# Largest frame taken before the hello exchange completes: a hello is tens of
# bytes, and a peer not yet admitted must not make us decode megabytes.
PRE_HELLO_MAX_BYTES = 64 << 10


class FrameBudget:
    """One peer's frame rate budget: a token bucket of ``limits.frame_burst`` frames
    refilled at ``limits.max_frames_per_s``."""

    def __init__(self, limits: Limits) -> None:
        self._limits = limits
        self._tokens = float(limits.frame_burst)
        self._refill = time.monotonic()

    def take(self) -> None:
        """Spend one frame of the budget, or raise RateLimitedError."""
        limits = self._limits
        now = time.monotonic()
        self._tokens = min(
            float(limits.frame_burst),
            self._tokens + (now - self._refill) * limits.max_frames_per_s,
        )
        self._refill = now
        if self._tokens < 1.0:
            raise RateLimitedError(f"over {limits.max_frames_per_s:g} frames/s")
        self._tokens -= 1.0


def check_frame_size(size: int, *, version: int, limits: Limits) -> None:
    """Raise OversizedFrameError for a frame of ``size`` bytes over its limit
    (``version`` 0: the hello exchange is not over yet)."""
    if not version and size > PRE_HELLO_MAX_BYTES:
        raise OversizedFrameError(
            f"frame of {size} bytes before the hello exchange is over the "
            f"{PRE_HELLO_MAX_BYTES} limit"
        )
    if size > limits.max_frame_bytes:
        hint = (
            ""
            if version >= frames.PARTS_VERSION
            else "; upgrade the peer to sync version 4 (diffs in parts)"
        )
        # Short: a close reason holds 123 bytes and the hint must survive.
        raise OversizedFrameError(
            f"frame of {size} bytes over the {limits.max_frame_bytes} limit{hint}"
        )


def check_hello(hello: Hello, *, node_id: str, cluster_id: str, cert: bytes | None) -> int:
    """The negotiated version for the peer's ``hello``, or why the peer is refused.

    ``node_id`` and ``cluster_id`` are ours; ``cert`` the peer's DER certificate
    when the transport authenticated it, whose fingerprint must be the hello's node.
    """
    version = frames.negotiate(frames.PROTOCOL_VERSIONS, hello.versions)
    if version is None:
        raise PeerRefusedError(
            f"no common protocol version (ours {frames.PROTOCOL_VERSIONS}, theirs {hello.versions})"
        )
    if hello.cluster != cluster_id:
        raise PeerRefusedError(f"peer belongs to cluster {hello.cluster[:16]}, not ours")
    if cert is not None and fingerprint(cert) != hello.node:
        raise PeerRefusedError("hello node id does not match the certificate fingerprint")
    if hello.node == node_id:
        raise ConnectionDeclinedError("connected to ourselves", permanent=True)
    return version
