"""One ``/yjs`` client's outgoing side: what it is sent, in order, and its close.

The first message offered in a turn of the loop while the client's sender is
idle goes out in that turn (:func:`edgestate.sync.eager.start_eagerly`): an
update that arrived from a peer or another client leaves without waiting a turn
for a task. Later messages of the turn, and those offered while a send is under
way, queue; the sender merges a run of
queued sync updates into one message (y-websocket reads one message a frame and
runs one transaction per message, so a burst costs the reader per message, not
per update). A client too far behind is closed, to resync on reconnect.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging

from aiohttp import WSCloseCode, web
from pycrdt import YMessageType, YSyncMessageType, merge_updates, read_message, write_message

from edgestate.sync.eager import OncePerTurn, start_eagerly

log = logging.getLogger(__name__)

# Queued sync updates merged into one message, and their bytes: bounds one merge.
MAX_MERGE = 256
MAX_MERGE_BYTES = 1 << 20
_UPDATE_HEAD = bytes([YMessageType.SYNC, YSyncMessageType.SYNC_UPDATE])


def sync_message(kind: YSyncMessageType, payload: bytes) -> bytes:
    """One y-protocols sync message (type bytes are varuints < 128: one byte each)."""
    return bytes([YMessageType.SYNC, kind]) + write_message(payload)


class YjsClient:
    """A connected client's send side; ``run_sender()`` is its one task."""

    def __init__(self, ws: web.WebSocketResponse, origin: str, queue_size: int) -> None:
        self.ws = ws
        self.origin = origin
        self.closing = False
        self._limit = queue_size
        self._pending: collections.deque[bytes] = collections.deque()
        self._wake = asyncio.Event()
        # The sender is waiting for work and no eager send is under way: an
        # offered message may go out now.
        self._idle = False
        self._eager: asyncio.Task[None] | None = None
        self._turn = OncePerTurn()
        self._close_code: int = WSCloseCode.TRY_AGAIN_LATER
        self._close_reason = b"resync needed"

    def offer(self, message: bytes) -> None:
        """Send ``message`` after everything offered before it."""
        if self._idle and self._eager is None and not self._pending and self._turn.take():
            self._send_now(message)
            return
        if self._pending and not self._pending[-1]:
            return  # closing: nothing goes after the close
        if len(self._pending) >= self._limit:
            # A client this far behind reconnects and resyncs with step 1/2,
            # which costs far less than buffering without bound.
            self.kick()
            return
        self._pending.append(message)
        self._wake.set()

    def end(self, code: int, reason: bytes) -> None:
        """Close the client with ``code`` (after nothing else it was sent)."""
        self._close_code, self._close_reason = code, reason
        self.kick()

    def kick(self) -> None:
        """Drop what is queued and close; a kicked client reconnects and resyncs."""
        self._pending.clear()
        self._pending.append(b"")
        self._wake.set()

    async def run_sender(self) -> None:
        """Send what queues, until closed."""
        try:
            while True:
                while not self._pending:
                    self._wake.clear()
                    self._idle = True
                    try:
                        await self._wake.wait()
                    finally:
                        self._idle = False
                if self._eager is not None:
                    await asyncio.wait([self._eager])  # it goes first
                message = self._take()
                if not message:
                    self.closing = True
                    await self.ws.close(code=self._close_code, message=self._close_reason)
                    return
                await self.ws.send_bytes(message)
        finally:
            if self._eager is not None:
                self._eager.cancel()

    def _send_now(self, message: bytes) -> None:
        try:
            task = start_eagerly(self.ws.send_bytes(message))
        except ConnectionError as exc:
            # Closing: its handler sees the socket end and unregisters it.
            log.debug("yjs client %s gone mid-send: %s", self.origin, exc)
            return
        if task is not None:  # the transport pushed back: the rest waits for it
            self._eager = task
            task.add_done_callback(self._eager_done)

    def _eager_done(self, task: asyncio.Task[None]) -> None:
        self._eager = None
        if not task.cancelled() and task.exception() is not None:
            log.debug("yjs client %s gone mid-send: %s", self.origin, task.exception())
        if self._pending:
            self._wake.set()

    def _take(self) -> bytes:
        """The next message: a run of queued sync updates merged into one."""
        first = self._pending.popleft()
        if not (first.startswith(_UPDATE_HEAD) and self._pending):
            return first
        updates = [read_message(first[2:])]
        size = len(updates[0])
        pending = self._pending
        while (
            pending
            and pending[0].startswith(_UPDATE_HEAD)
            and len(updates) < MAX_MERGE
            and size < MAX_MERGE_BYTES
        ):
            update = read_message(pending.popleft()[2:])
            updates.append(update)
            size += len(update)
        if len(updates) == 1:
            return first
        with contextlib.suppress(Exception):
            return sync_message(YSyncMessageType.SYNC_UPDATE, merge_updates(*updates))
        # Not mergeable (cannot happen for updates the store took): send them apart.
        for update in reversed(updates[1:]):
            pending.appendleft(sync_message(YSyncMessageType.SYNC_UPDATE, update))
        return sync_message(YSyncMessageType.SYNC_UPDATE, updates[0])
