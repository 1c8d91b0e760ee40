"""``/yjs/{doc}``: the standard y-websocket sync protocol over a node's documents.

An off-the-shelf Yjs client (``y-websocket``'s ``WebsocketProvider``) connects,
exchanges sync step 1 / step 2 with the node, then sends and receives updates.
Its writes go through ``store.apply_update`` like a peer's, so they are durable,
replicated to peers and seen by modules; every change of the store (local,
module, peer) is sent to the clients of that document. Awareness messages are
relayed between the clients of one document and never stored.

Fan-out does not wait for the fsync, nor for the store's writer (docs/yjs.md): a
client's or a peer's update that the store announces at submission (every check
that needs no document state passed: :mod:`edgestate.store.announce`) goes to the
other clients of its document in the same turn of the loop; one the store does
not announce goes once the writer has accepted it (checked, integrated into the
open transaction), while its commit is made durable. A client's next updates are
queued meanwhile (at most :data:`MAX_IN_FLIGHT`), so a
burst shares group commits. y-websocket has no per-update acknowledgement: its
author keeps every update and sends its whole state again on reconnect (sync
step 1 / 2), so a crash before the fsync loses nothing the author cannot resend.
A refused update closes its client with the code of the refusal. Local writes
(modules, the HTTP API) reach clients once durable, as before.

Who may connect is the node's question: it passes ``authorize``, which answers a
request for a document with a :class:`YjsAccess` or raises. A read-only client
is served sync step 1 / step 2 and every live update, and its awareness is
relayed; an update it sends closes it with :data:`READ_ONLY_CLOSE` and is not
applied. A client whose access ends (expiry, revocation) is closed with
:data:`ACCESS_ENDED_CLOSE`.

Message layout (y-protocols): a varuint message type (0 sync, 1 awareness);
sync messages carry a varuint sub-type (0 step 1 with a state vector, 1 step 2
and 2 update with a v1 update) and a length-prefixed payload.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from aiohttp import WSCloseCode, WSMsgType, web
from pycrdt import YMessageType, YSyncMessageType, merge_updates, read_message

from edgestate.errors import (
    InvalidUpdateError,
    StaleReplicaError,
    StoreError,
    SystemDocumentError,
    TokenScopeError,
    UnknownDocumentError,
)
from edgestate.store import (
    DOC_NAME_RULE,
    ChangeEvent,
    Store,
    check_user_writable,
    is_doc_name,
    is_system_document,
)
from edgestate.sync.yjs_client import YjsClient, sync_message

log = logging.getLogger(__name__)

YJS_PATH = "/yjs/{doc}"
# How long closing waits for a client's close handshake.
_CLOSE_WAIT_S = 3.0
_EMPTY_UPDATE = b"\x00\x00"
# WebSocket close code (application range) for a client whose Y.Doc holds part of
# history this node garbage-collected; it must reconnect with a fresh Y.Doc.
STALE_REPLICA_CLOSE = 4409
# Close codes (application range) of a client whose credential does not allow
# what it did: an update on read-only access; access that expired or was revoked.
READ_ONLY_CLOSE = 4403
ACCESS_ENDED_CLOSE = 4401
# Updates of one client queued to the store and not yet durable: past it, its
# reader waits for the oldest, so TCP pushes back on a client writing faster than
# the disk. Generous, since a burst shares group commits only while it is queued.
MAX_IN_FLIGHT = 512
# And their bytes: a client may send 32 MiB messages, 512 of which must not queue.
MAX_IN_FLIGHT_BYTES = 64 << 20
# Change events waiting for the loop: past it (a loop stalled for seconds under
# a burst) they are dropped and every client resyncs, as with a ChangeStream.
MAX_PENDING_EVENTS = 10_000
# Change events merged into one message per client, and their bytes: bounds the
# merge's work between two turns of the event loop.
_MAX_MERGE = 256
_MAX_MERGE_BYTES = 1 << 20


@dataclass(frozen=True, slots=True)
class YjsAccess:
    """What one client may do with the document it connected to."""

    write: bool = True
    create: bool = True
    # The credential's id (a client token's), so that revoking it can close its clients.
    credential: str | None = None
    # Wall-clock time (time.time()) at which the client is closed.
    expires_at: float | None = None


FULL_ACCESS = YjsAccess()
Authorize = Callable[[web.Request, str], YjsAccess]


class _Client(YjsClient):
    """A client's send side, with what its receive side tracks."""

    def __init__(
        self, ws: web.WebSocketResponse, origin: str, queue_size: int, access: YjsAccess
    ) -> None:
        super().__init__(ws, origin, queue_size)
        self.access = access
        self.in_flight: collections.deque[asyncio.Future[bool]] = collections.deque()
        self.in_flight_bytes = 0


class YjsEndpoint:
    """Serves y-websocket clients; ``start()`` / ``close()`` own its tasks."""

    def __init__(
        self,
        store: Store,
        *,
        authorize: Authorize | None = None,
        create_documents: bool = True,
        max_message_bytes: int = 32 << 20,
        client_queue: int = 10_000,
        compress: bool = False,
    ) -> None:
        self.store = store
        # permessage-deflate, if a client offers it. Off: a Yjs update is a few
        # dozen bytes of varints that deflate barely shrinks, and compressing each
        # one at both ends cost more than the rest of its trip (bench_yjs, one
        # node: p50 1.03-1.06x the hub with it, 0.86x without; CPU per update
        # 168-209 us against 141). A big sync step 2 goes uncompressed too.
        self._compress = compress
        self._create = create_documents
        self._authorize: Authorize = authorize or (lambda _request, _doc: FULL_ACCESS)
        self._max_message = max_message_bytes
        self._client_queue = client_queue
        self._clients: dict[str, set[_Client]] = {}
        self._ids = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._unsubscribe_submitted: Callable[[], None] | None = None
        # From the writer thread to the loop (deque appends and pops are atomic).
        self._arrived: collections.deque[ChangeEvent] = collections.deque()
        self._drain_due = False
        self._overflowed = False
        self._closing = False

    async def __aenter__(self) -> YjsEndpoint:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Begin forwarding the store's commits to connected clients."""
        self._loop = asyncio.get_running_loop()
        # Early: a client's or peer's update is relayed while its commit is fsynced.
        # A listener of its own rather than a ChangeStream and a task: the events
        # of one group commit reach the loop in one wakeup and go out in the same
        # turn, one task hop fewer per update.
        self._unsubscribe = self.store.subscribe_batches(self._from_writer, early=True)
        # Sooner still: what the store announces at submission, in the submitter's turn.
        self._unsubscribe_submitted = self.store.subscribe_submitted(self._from_submit)

    async def close(self) -> None:
        """Disconnect every client and stop forwarding."""
        self._closing = True
        for clients in list(self._clients.values()):
            for client in list(clients):
                # Bounded: aiohttp waits on the client's reader, which may never answer.
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(_CLOSE_WAIT_S):
                        await client.ws.close(
                            code=WSCloseCode.GOING_AWAY, message=b"node shutting down"
                        )
        if self._unsubscribe_submitted is not None:
            self._unsubscribe_submitted()
            self._unsubscribe_submitted = None
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self._arrived.clear()

    def end_access(self, credential: str, reason: str) -> int:
        """Close every client connected with ``credential``; how many there were."""
        ended = 0
        for clients in self._clients.values():
            for client in clients:
                if client.access.credential == credential:
                    client.end(ACCESS_ENDED_CLOSE, reason.encode()[:120])
                    ended += 1
        return ended

    def routes(self) -> list[web.RouteDef]:
        """The ``/yjs/{doc}`` route, to mount in any aiohttp application."""
        return [web.get(YJS_PATH, self._handle)]

    def _from_submit(self, doc: str, update: bytes, origin: str) -> None:
        """On the loop, as a client's or peer's update is submitted to the store: to
        the document's other clients now (its event, later, is skipped)."""
        if self._closing:
            return
        clients = self._clients.get(doc)
        if not clients:
            return
        message = sync_message(YSyncMessageType.SYNC_UPDATE, update)
        for client in clients:
            if client.origin != origin:
                client.offer(message)

    def _from_writer(self, events: list[ChangeEvent]) -> None:
        """On the writer thread: queue a commit's ``events``, and wake the loop once
        for them (once per event, an idle loop took the GIL and drained one at a time).
        Announced ones went out when they were submitted (_from_submit)."""
        events = [e for e in events if not e.announced]
        if not events:
            return
        if len(self._arrived) + len(events) > MAX_PENDING_EVENTS:
            # The loop is this far behind: drop them, and have every client resync.
            self._arrived.clear()
            self._overflowed = True
        self._arrived.extend(events)
        if not self._drain_due:
            self._drain_due = True
            loop = self._loop
            assert loop is not None
            with contextlib.suppress(RuntimeError):  # the loop closed: nobody listens
                loop.call_soon_threadsafe(self._drain)

    def _drain(self) -> None:
        # Cleared first: an event appended from here on schedules a drain of its own.
        self._drain_due = False
        if self._closing:
            return  # scheduled before close(): its clients are gone
        if self._overflowed:
            self._overflowed = False
            # Dropped events: clients must resync; closing makes them do so.
            for clients in self._clients.values():
                for client in clients:
                    client.kick()
        arrived = self._arrived
        while arrived:
            # A burst: everything already waiting goes out as one message per
            # client and document (y-websocket reads one message a frame, so the
            # updates are merged, not concatenated): per-message costs (a frame,
            # the client's transaction) are paid once.
            events: list[ChangeEvent] = []
            size = 0
            while arrived and len(events) < _MAX_MERGE and size < _MAX_MERGE_BYTES:
                event = arrived.popleft()
                events.append(event)
                size += len(event.update)
            by_doc: dict[str, list[ChangeEvent]] = {}
            for e in events:
                by_doc.setdefault(e.doc, []).append(e)
            for doc, doc_events in by_doc.items():
                _fan_out(self._clients.get(doc, ()), doc_events)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if self._closing:
            raise web.HTTPServiceUnavailable(reason="node shutting down")
        doc = request.match_info["doc"]
        if not is_doc_name(doc):
            raise web.HTTPBadRequest(reason=f"invalid document name: use {DOC_NAME_RULE}")
        access = self._authorize(request, doc)  # raises: answered before the upgrade
        if not self.store.has_document(doc):
            if is_system_document(doc):
                # The node's own documents are made by their own paths, never here.
                raise web.HTTPForbidden(reason=f"{doc} is a system document (read-only here)")
            if not self._create:
                raise web.HTTPNotFound(reason=f"no document {doc}")
            if not access.create:
                raise UnknownDocumentError(
                    f"no document {doc!r}, and this token may not create documents "
                    "(a grant of its own: edgestate token create --create)"
                )
            await self.store.acreate_document(doc)
        ws = web.WebSocketResponse(max_msg_size=self._max_message, compress=self._compress)
        await ws.prepare(request)
        client = _Client(ws, f"yjs:{next(self._ids)}", self._client_queue, access)
        clients = self._clients.setdefault(doc, set())
        clients.add(client)
        loop = asyncio.get_running_loop()
        sender = loop.create_task(client.run_sender())
        expiry = (
            None
            if access.expires_at is None
            else loop.call_later(
                max(0.0, access.expires_at - time.time()),
                client.end,
                ACCESS_ENDED_CLOSE,
                b"token expired",
            )
        )
        try:
            sv = await self.store.astate_vector(doc)
            client.offer(sync_message(YSyncMessageType.SYNC_STEP1, sv))
            async for msg in ws:
                if msg.type != WSMsgType.BINARY:
                    continue  # y-websocket sends binary only; pings are handled by aiohttp
                await self._on_message(doc, client, msg.data, clients)
        except Exception as exc:
            refusal = _refusal(doc, exc)
            if refusal is None:
                raise
            await ws.close(code=refusal[0], message=refusal[1])
        finally:
            if expiry is not None:
                expiry.cancel()
            clients.discard(client)
            if client.closing:
                # Its close is under way: cancelled mid-write, the close frame (and
                # with it the close code) may never reach the client.
                await asyncio.wait([sender], timeout=_CLOSE_WAIT_S)
            sender.cancel()
            await asyncio.wait([sender])
        return ws

    async def _on_message(
        self, doc: str, client: _Client, data: bytes, clients: set[_Client]
    ) -> None:
        if not data:
            return
        if data[0] == YMessageType.AWARENESS:
            for other in clients:
                if other is not client:
                    other.offer(data)
            return
        if data[0] != YMessageType.SYNC or len(data) < 2:
            return  # other message types (auth, query-awareness) are optional; ignore
        payload = read_message(data[2:])
        if data[1] == YSyncMessageType.SYNC_STEP1:
            update = await self.store.adiff(doc, payload)
            client.offer(sync_message(YSyncMessageType.SYNC_STEP2, update))
        elif data[1] in (YSyncMessageType.SYNC_STEP2, YSyncMessageType.SYNC_UPDATE):
            if payload == _EMPTY_UPDATE:
                return
            if not client.access.write:
                # Checked before the store sees it: nothing of it is applied.
                raise TokenScopeError(f"update from a read-only client of {doc}")
            check_user_writable(doc)  # reads of `_` documents are fine, writes are not
            applied = self.store.submit_update(doc, payload, origin=client.origin)
            size = len(payload)
            applied.add_done_callback(lambda done: _settled(doc, client, done, size))
            client.in_flight.append(applied)
            client.in_flight_bytes += size
            while client.in_flight and (
                len(client.in_flight) > MAX_IN_FLIGHT
                or client.in_flight_bytes > MAX_IN_FLIGHT_BYTES
            ):
                await asyncio.wait([client.in_flight[0]])


def _fan_out(clients: Iterable[_Client], events: list[ChangeEvent]) -> None:
    """Offer ``events`` (of one document) to its clients, each but to its author."""
    messages: dict[tuple[int, ...], bytes] = {}
    for client in clients:
        picked = tuple(i for i, e in enumerate(events) if e.origin != client.origin)
        if not picked:
            continue
        message = messages.get(picked)
        if message is None:
            updates = [events[i].update for i in picked]
            update = updates[0] if len(updates) == 1 else merge_updates(*updates)
            message = messages[picked] = sync_message(YSyncMessageType.SYNC_UPDATE, update)
        client.offer(message)


def _settled(doc: str, client: _Client, applied: asyncio.Future[bool], size: int) -> None:
    """A queued update's outcome: a refused one closes its client (after what it was sent)."""
    client.in_flight_bytes -= size
    if client.in_flight and client.in_flight[0] is applied:
        client.in_flight.popleft()
    else:  # resolved out of order only when the store fails a whole group
        with contextlib.suppress(ValueError):
            client.in_flight.remove(applied)
    if applied.cancelled() or applied.exception() is None:
        return
    refusal = _refusal(doc, applied.exception())
    if refusal is None:  # not a refusal of the update: the store is closing or failed
        refusal = (WSCloseCode.INTERNAL_ERROR, str(applied.exception()).encode()[:120])
    client.end(*refusal)


def _refusal(doc: str, exc: BaseException | None) -> tuple[int, bytes] | None:
    """The close code and reason for a client whose message raised ``exc`` (None: not ours)."""
    fields = {"fields": {"doc": doc}}
    if isinstance(exc, StaleReplicaError):
        # Its Y.Doc holds history the node collected: only a fresh Y.Doc can sync.
        log.warning("closing yjs client of %s: %s", doc, exc, extra=fields)
        return STALE_REPLICA_CLOSE, b"stale replica: start a fresh Y.Doc"
    # read_message asserts on a truncated length prefix (found in review).
    if isinstance(
        exc, InvalidUpdateError | IndexError | RuntimeError | AssertionError | ValueError
    ):
        log.warning("closing yjs client of %s: bad message (%s)", doc, exc, extra=fields)
        return WSCloseCode.PROTOCOL_ERROR, b"malformed y-protocols message"
    if isinstance(exc, TokenScopeError):
        log.info("closing yjs client of %s: %s", doc, exc, extra=fields)
        return READ_ONLY_CLOSE, b"read-only token: updates are refused"
    if isinstance(exc, SystemDocumentError):
        log.warning("closing yjs client of %s: %s", doc, exc, extra=fields)
        return WSCloseCode.POLICY_VIOLATION, b"system document: read-only"
    if isinstance(exc, StoreError):
        return WSCloseCode.INTERNAL_ERROR, str(exc).encode()[:120]
    return None
