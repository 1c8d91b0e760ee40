"""The receiving side of the NATS link: the durable consumer, verifying, applying.

A batch fetched from this node's durable pull consumer is verified message by
message (``nats_seal``: a sender's certificate is looked up once, by
fingerprint, in the certificate stream), its updates submitted to the store
without waiting (they share group commits), and each message acked only once
its apply committed: a node stopped or cut off mid-batch gets the rest again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from edgestate.errors import (
    InvalidUpdateError,
    MalformedFrameError,
    NatsLinkError,
    PeerRefusedError,
    ProtocolError,
)
from edgestate.sync import frames, parts
from edgestate.sync.frames import Collected, Diff, DiffPart, Push
from edgestate.sync.gossip import record_of
from edgestate.sync.nats_consumer import exists, open_consumer
from edgestate.sync.nats_host import LinkHost, raise_if_cancelled
from edgestate.sync.nats_seal import NeedCert, Opened, Refused, Verifier
from edgestate.sync.nats_subjects import durable_name

log = logging.getLogger(__name__)

# Origin of updates applied from NATS: never published back, relayed to LAN peers.
NATS_ORIGIN = "nats:"
# Messages fetched from the consumer per batch: their applies share group commits.
FETCH_BATCH = 256
# Room in a message for the envelope (sender, signature) and frame fields.
ENVELOPE_OVERHEAD = 512
# Between retries of a failed consumer call.
RETRY_S = 0.5
# A fetch waits this long for messages.
FETCH_WAIT_S = 2.0
# After this long without a message, the consumer is checked to still exist.
CONSUMER_CHECK_S = 10.0
# How long the JetStream API may not answer (a server just restarted, its
# replicas catching up) before the stream is assumed to have dropped something.
API_SETTLE_S = 30.0
# Senders with a diff in parts assembling at once (bounded memory).
MAX_ASSEMBLIES = 256
# A sender publishes a diff's parts back to back, so one whose next part has not
# come for this long never will (it restarted, or the stream dropped a part):
# its assembly is dropped, giving back its share of the node's budget.
ASSEMBLY_IDLE_S = 30.0


class Inbound:
    """Verifies and applies what arrives over NATS for one link."""

    def __init__(self, link: LinkHost, verifier: Verifier, on_gap: Callable[[], None]) -> None:
        self._link = link
        self.verifier = verifier
        self._on_gap = on_gap
        # Set by the link (nats_catchup): where to restart the consumer, if skipping.
        self._start_sequence: Callable[[], Awaitable[int | None]] | None = None
        self._assemblies: dict[str, parts.Assembly] = {}
        self._touched: dict[str, float] = {}  # sender -> loop time of its last part
        self.durable = durable_name(link.node_id)
        # The stream sequence the consumer should deliver next. The consumer sees
        # every message of the stream (its filter is the stream's one subject
        # space), so a later one means the stream dropped messages (retention,
        # while this node was slow or stalled) before they reached us.
        self._next_seq: int | None = None
        self._resubscribe = asyncio.Event()
        self._online = asyncio.Event()

    def set_start(self, start_sequence: Callable[[], Awaitable[int | None]]) -> None:
        """Where the consumer restarts when it is (re)created (see ``nats_catchup``)."""
        self._start_sequence = start_sequence

    async def log_has_gap(self) -> bool:
        """Whether the stream dropped messages (retention) this node never applied:
        then only state-vector anti-entropy can bring them."""
        _, js = self._link.client
        consumer = await js.consumer_info(self._link.subjects.stream, self.durable)
        stream = await js.stream_info(self._link.subjects.stream)
        first: int = stream.state.first_seq
        floor: int = consumer.ack_floor.stream_seq if consumer.ack_floor else 0
        delivered: int = consumer.delivered.stream_seq if consumer.delivered else 0
        # From here on, gaps are seen in what the consumer delivers (``_delivered``).
        self._next_seq = max(delivered + 1, first)
        return first > floor + 1

    async def check_gap(self) -> None:
        """Ask for an anti-entropy round if ``log_has_gap`` (at connect, after a reconnect)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + API_SETTLE_S
        while True:
            try:
                gap = await self.log_has_gap()
                break
            except (nats.errors.Error, NatsLinkError, OSError) as exc:
                raise_if_cancelled()
                if loop.time() > deadline:
                    log.info("could not compare the stream with our consumer (healing): %s", exc)
                    gap = True
                    break
                # A server just restarted may not answer yet; a round now would
                # fetch every document's diff from every node for nothing.
                await asyncio.sleep(RETRY_S)
        if gap:
            log.info("the NATS stream no longer holds all this node missed: anti-entropy")
            self._on_gap()

    def _delivered(self, seq: int) -> None:
        """Note one delivered stream sequence; heal if messages before it were dropped."""
        expected = self._next_seq
        if expected is not None and seq > expected:
            self._link.stats.stream_gaps += 1
            log.info(
                "NATS stream messages %d..%d were dropped before this node applied them "
                "(retention ran out while it lagged): anti-entropy",
                expected,
                seq - 1,
            )
            self._on_gap()
        if expected is None or seq >= expected:
            self._next_seq = seq + 1  # a redelivery (seq below) changes nothing

    async def decode(self, body: bytes, max_docs: int = 1) -> frames.Frame:
        """One frame of a verified message, within the message size and our limits."""
        return await parts.decode(
            body,
            max_bytes=self._link.max_payload + ENVELOPE_OVERHEAD,
            max_docs=max_docs,
            max_diff_bytes=self._link.limits.max_diff_frame_bytes,
        )

    def offline(self) -> None:
        """The connection dropped: stop fetching until ``reconnected``. A pull
        request sent meanwhile would wait in the client's buffer, be flushed at
        the reconnect, and deliver a batch before the catch-up could decide."""
        self._online.clear()

    def connected(self) -> None:
        """A (first) connection is up: fetching may run (``offline`` may have been
        called by a failed attempt's connection closing)."""
        self._online.set()

    def reconnected(self) -> None:
        """Back after a cut: a node far behind catches up by diff
        (``nats_catchup``) as at start, and the stream is checked for what it
        dropped meanwhile (``check_gap``), before fetching again."""
        self._resubscribe.set()
        self._online.set()

    async def consume(self) -> None:
        """Apply what the durable consumer delivers, until cancelled."""
        sub = await self._subscribe(await self._catch_up())
        try:
            while True:
                lost = await self._fetch(sub)
                if not lost:
                    self._resubscribe.clear()
                # A consumer found gone is made again from our ack floor
                # (``_subscribe``), unless we are far enough behind to catch up
                # by diff: it may have gone while we were cut off.
                start = await self._catch_up()
                if start is None and not lost:
                    # The same subscription: what the server already delivered to
                    # it is still fetched, not left to wait out ack_wait.
                    await self.check_gap()
                    continue
                with contextlib.suppress(nats.errors.Error, OSError):
                    await sub.unsubscribe()
                sub = await self._subscribe(start)
        finally:
            with contextlib.suppress(nats.errors.Error, OSError):
                await sub.unsubscribe()

    async def _catch_up(self) -> int | None:
        return await self._start_sequence() if self._start_sequence else None

    async def _subscribe(self, start: int | None) -> JetStreamContext.PullSubscription:
        """The durable consumer (made again at ``start`` if given), checked for gaps."""
        _, js = self._link.client
        while True:
            raise_if_cancelled()
            acked = self._link.stats.acked_seq
            try:
                sub = await open_consumer(
                    js,
                    self._link.subjects.stream,
                    self.durable,
                    start=start,
                    resume_at=acked + 1 if acked else None,
                )
                await self.check_gap()
                return sub
            except (nats.errors.Error, NatsLinkError, OSError) as exc:
                raise_if_cancelled()
                self._link.stats.last_error = f"consumer: {exc!r}"
                await asyncio.sleep(RETRY_S)

    async def _fetch(self, sub: JetStreamContext.PullSubscription) -> bool:
        """Fetch and apply batches until ``resubscribe`` asks for a new consumer
        (False) or the consumer is found gone (True)."""
        loop = asyncio.get_running_loop()
        quiet_since = loop.time()
        while True:
            raise_if_cancelled()
            await self._online.wait()
            if self._resubscribe.is_set():
                return False
            if loop.time() - quiet_since > CONSUMER_CHECK_S:
                # Nothing for a while: fine on a quiet stream, unless the consumer
                # is gone (a fetch from a missing one only ever times out).
                quiet_since = loop.time()
                if await self._consumer_lost():
                    return True
            try:
                batch = await sub.fetch(FETCH_BATCH, timeout=FETCH_WAIT_S)
            except nats.errors.TimeoutError:
                raise_if_cancelled()
                continue
            except (nats.errors.Error, OSError) as exc:
                raise_if_cancelled()
                self._link.stats.last_error = f"fetch: {exc!r}"
                if await self._consumer_lost():
                    return True
                await asyncio.sleep(RETRY_S)
                continue
            quiet_since = loop.time()
            try:
                await self._apply_batch(batch)
            except (nats.errors.Error, NatsLinkError, OSError) as exc:
                # A certificate lookup or an ack failed with the link: what was not
                # acked is delivered again (after ack_wait); applies are idempotent.
                raise_if_cancelled()
                self._link.stats.last_error = f"apply: {exc!r}"
                await asyncio.sleep(RETRY_S)

    async def _consumer_lost(self) -> bool:
        """Whether the servers say our consumer is gone (not merely unreachable)."""
        try:
            _, js = self._link.client
            gone = not await exists(js, self._link.subjects.stream, self.durable)
        except (nats.errors.Error, NatsLinkError, OSError):
            raise_if_cancelled()
            return False
        if gone:
            self._link.stats.consumers_lost += 1
            log.warning("the NATS consumer %s is gone: making it again", self.durable)
        return gone

    async def _apply_batch(self, batch: list[Msg]) -> None:
        applies: list[tuple[Msg, list[asyncio.Future[bool]]]] = []
        for msg in batch:
            self._link.stats.messages_in += 1
            # Payload, subject and reply subject (the ack address): what crossed the wire.
            self._link.stats.bytes_in += len(msg.data) + len(msg.subject) + len(msg.reply or "")
            doc = self._link.subjects.doc_of(msg.subject)
            opened = await self.open(msg.subject, msg.data)
            futures: list[asyncio.Future[bool]] = []
            if opened is not None and opened.sender != self._link.node_id and doc is not None:
                futures = await self._apply_frame(opened, doc, msg.subject)
            applies.append((msg, futures))
            meta = msg.metadata
            self._delivered(meta.sequence.stream)
            self._link.stats.acked_by_doc[doc or "?"] = meta.sequence.stream
            self._link.stats.consumer_pending = meta.num_pending
        for msg, futures in applies:
            # Acked only once durably applied: a node stopped now gets it again.
            for result in await asyncio.gather(*futures, return_exceptions=True):
                if isinstance(result, InvalidUpdateError):
                    self._link.stats.malformed += 1
                    log.warning("NATS update on %s refused by the store: %s", msg.subject, result)
                elif isinstance(result, BaseException):
                    raise result
            await msg.ack()
            self._link.stats.acked_seq = max(
                self._link.stats.acked_seq, msg.metadata.sequence.stream
            )

    async def open(self, subject: str, data: bytes) -> Opened | None:
        """The verified envelope, or None (counted) if it is not a member's."""
        try:
            opened = self.verifier.open(subject, data)
            if isinstance(opened, NeedCert):
                try:
                    await self._learn(opened.sender)
                except PeerRefusedError:
                    pass  # remembered by the verifier: open() says why
                opened = self.verifier.open(subject, data)
        except MalformedFrameError as exc:
            self._link.stats.malformed += 1
            log.debug("malformed NATS message on %s: %s", subject, exc)
            return None
        if isinstance(opened, Opened):
            return opened
        if isinstance(opened, Refused):
            self._link.stats.refusal(opened.sender, opened.reason)
        else:
            self._link.stats.refusal(opened.sender, "its certificate could not be learned")
        return None

    async def _learn(self, sender: str) -> None:
        _, js = self._link.client
        try:
            found = await js.get_last_msg(
                self._link.subjects.cert_stream, self._link.subjects.cert(sender)
            )
        except nats.js.errors.NotFoundError:
            self.verifier.learn(sender, b"")  # refused (and remembered): no certificate
            return
        self.verifier.learn(sender, found.data or b"")

    async def _apply_frame(
        self, opened: Opened, doc: str, subject: str
    ) -> list[asyncio.Future[bool]]:
        try:
            frame = await self.decode(opened.body)
            if isinstance(frame, DiffPart):
                if frame.index == 0:
                    # A sender publishes one diff's parts back to back: a new
                    # part 0 means its unfinished one will never finish.
                    self.drop_assembly(opened.sender)
                assembly = self.assembly(opened.sender)
                whole = await assembly.add(frame)
                self.assembly_active(opened.sender)
                if whole is None:
                    return []
                frame = whole
        except ProtocolError as exc:  # broken, or a part out of order: anti-entropy heals
            self._link.stats.malformed += 1
            self.drop_assembly(opened.sender)
            log.warning("bad frame on %s from %s: %s", subject, opened.sender[:16], exc)
            return []
        return self.apply_updates(opened.sender, doc, frame)

    def apply_updates(
        self, sender: str, doc: str, frame: frames.Frame
    ) -> list[asyncio.Future[bool]]:
        """Submit the updates of a push or diff of ``doc`` (others are ignored)."""
        if doc in self._link.local_only:
            return []
        pairs: list[tuple[bytes, Collected | None]] = []
        if isinstance(frame, Push):
            pairs = [(u, None) for d, u in frame.updates if d == doc]
        elif isinstance(frame, Diff) and frame.doc == doc:
            pairs = [(frame.update, frame.collected)]
        out: list[asyncio.Future[bool]] = []
        for update, collected in pairs:
            self._link.stats.updates_applied += 1
            out.append(
                asyncio.ensure_future(
                    self._link.store.aapply_update(
                        doc,
                        update,
                        origin=NATS_ORIGIN + sender,
                        create=True,
                        record=record_of(collected),
                    )
                )
            )
        return out

    def new_assembly(self) -> parts.Assembly:
        """An assembly of one diff in parts, bounded by ``max_diff_frame_bytes`` and by
        the node-wide budget; whoever drops it calls ``clear()`` to give that back."""
        limit = self._link.limits.max_diff_frame_bytes
        return parts.Assembly(limit, limit, 1, self._link.assembly_budget)

    def drop_assembly(self, sender: str) -> None:
        """Forget ``sender``'s diff in parts (broken, or evicted)."""
        self._touched.pop(sender, None)
        found = self._assemblies.pop(sender, None)
        if found is not None:
            found.clear()

    def clear_assemblies(self) -> None:
        """Drop every diff in parts (the link closed)."""
        for sender in list(self._assemblies):
            self.drop_assembly(sender)

    def assembly(self, sender: str) -> parts.Assembly:
        """``sender``'s diff in parts (a new one if none is open)."""
        self._touched[sender] = asyncio.get_running_loop().time()
        found = self._assemblies.get(sender)
        if found is None:
            if len(self._assemblies) >= MAX_ASSEMBLIES:
                self.drop_assembly(next(iter(self._assemblies)))
            found = self.new_assembly()
            self._assemblies[sender] = found
        return found

    def assembly_active(self, sender: str) -> None:
        """``sender``'s part was just taken (its idle time starts now)."""
        if sender in self._touched:
            self._touched[sender] = asyncio.get_running_loop().time()

    async def sweep_idle(self) -> None:
        """Drop diffs in parts whose sender went quiet, for the link's lifetime.

        A task of its own: the consumer may be waiting for room in the budget
        that exactly such an assembly holds."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(ASSEMBLY_IDLE_S / 4)
            now = loop.time()
            for sender in [o for o, t in self._touched.items() if now - t > ASSEMBLY_IDLE_S]:
                found = self._assemblies.get(sender)
                if found is not None and found.waiting:
                    continue  # not idle: waiting for room (that this sweep may free)
                if found is not None and found.open:
                    log.info("dropping an unfinished diff in parts from %s", sender[:16])
                self.drop_assembly(sender)
