"""The transport seam: a ``Channel`` carries binary frames between two nodes.

Connection logic (``edgestate.sync.connection``) depends on this protocol only,
never on aiohttp: a second transport is one more implementation. Here: the
in-memory pair; ``edgestate.sync.websocket`` has the aiohttp one. Contract, kept
by both implementations here and checked by tests/sync/test_channel.py:

- ``send(data)`` delivers one message whole, in order; on a closed channel it
  raises ``ConnectionError``.
- ``receive()`` returns the next message's bytes. It raises ``PeerGoneError``
  once the channel is closed (by either side; again on every later call),
  ``OversizedFrameError`` for a message over the transport's limit,
  ``MalformedFrameError`` for a broken transport frame and
  ``UnexpectedFrameError`` for a non-binary message.
- ``close(code, reason)`` ends the channel; the other side's ``close_code`` and
  ``close_reason`` then say why (WebSocket close codes, see ``CloseCode``).
"""

from __future__ import annotations

import asyncio
import enum
from dataclasses import dataclass
from typing import Protocol

from edgestate.errors import PeerGoneError

# WebSocket close reasons are capped at 123 bytes by RFC 6455.
MAX_REASON = 120


class CloseCode(enum.IntEnum):
    """The close codes the sync protocol uses (RFC 6455 numbering)."""

    OK = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    # The bounded mesh is full on this node: dial another peer (docs/mesh.md).
    TRY_AGAIN_LATER = 1013


class Channel(Protocol):
    """A bidirectional, message-oriented, ordered link to one peer."""

    @property
    def closed(self) -> bool:
        """Whether the channel is closed (or closing)."""
        ...

    @property
    def close_code(self) -> int | None:
        """The close code once closed (the peer's if it closed first)."""
        ...

    @property
    def close_reason(self) -> str | None:
        """The reason the peer gave when it closed the channel, if it did."""
        ...

    async def send(self, data: bytes) -> None:
        """Send one binary message."""
        ...

    async def receive(self) -> bytes:
        """The next binary message (see the module docstring for errors)."""
        ...

    async def close(self, code: int, reason: str) -> None:
        """Close with a WebSocket close code and a short reason."""
        ...


@dataclass(frozen=True, slots=True)
class _Close:
    code: int
    reason: str


class MemoryChannel:
    """One end of an in-process ``Channel`` pair (see ``memory_channel_pair``)."""

    def __init__(self) -> None:
        self._inbox: asyncio.Queue[bytes | _Close] = asyncio.Queue()
        self._peer: MemoryChannel | None = None
        self._closed = False
        self._code: int | None = None
        self._reason: str | None = None

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def close_code(self) -> int | None:
        return self._code

    @property
    def close_reason(self) -> str | None:
        return self._reason

    async def send(self, data: bytes) -> None:
        if self._closed or self._peer is None:
            raise ConnectionResetError("channel closed")
        self._peer._inbox.put_nowait(bytes(data))

    async def receive(self) -> bytes:
        if self._closed:
            raise PeerGoneError
        item = await self._inbox.get()
        if isinstance(item, _Close):
            if not self._closed:  # the peer closed first: its code and reason stand
                self._closed = True
                self._code, self._reason = item.code, item.reason
            raise PeerGoneError
        return item

    async def close(self, code: int, reason: str) -> None:
        if self._closed:
            return
        self._closed = True
        self._code = code
        # Cut like a WebSocket reason, so a test sees what a real peer would.
        cut = reason.encode()[:MAX_REASON].decode(errors="ignore")
        if self._peer is not None:
            self._peer._inbox.put_nowait(_Close(code, cut))
        self._inbox.put_nowait(_Close(code, cut))  # wakes our own reader


def memory_channel_pair() -> tuple[MemoryChannel, MemoryChannel]:
    """Two connected in-process channels: what one sends, the other receives."""
    a, b = MemoryChannel(), MemoryChannel()
    a._peer, b._peer = b, a
    return a, b
