"""State-vector anti-entropy over NATS request/reply.

The JetStream log is bounded (``max_age_s``, ``max_bytes``): a site cut off for
longer than it holds misses part of it, and a publish dropped while the link was
down never reached it. So a node asks, on ``<prefix>.sv``, "here are my state
vectors"; every other node answers to the request's inbox with the diff of each
document the asker lacks (split under the server's payload limit, the
collection record riding in the diff as on the LAN) and a ``synced``. The asker
applies what arrives for ``answer_window_s``. Yjs updates are idempotent, so the
same diff from several nodes costs bytes, never correctness.

When the asker's state vectors do not fit in one message they go in several
requests, and only documents named are answered; documents it lacks entirely
then arrive through the stream (or the next round, once it holds them).
"""

from __future__ import annotations

import asyncio
import logging
import random

import nats.errors
from nats.aio.client import NO_RESPONDERS_STATUS, Client
from nats.aio.msg import Msg
from nats.js.api import Header

from edgestate.errors import InvalidUpdateError, MalformedFrameError, NatsLinkError, ProtocolError
from edgestate.sync import parts
from edgestate.sync.frames import Diff, DiffPart, StateVectors, Synced
from edgestate.sync.gossip import EMPTY_UPDATE, collected_of
from edgestate.sync.nats_host import LinkHost, raise_if_cancelled
from edgestate.sync.nats_inbound import Inbound
from edgestate.sync.nats_subjects import durable_name

log = logging.getLogger(__name__)

# A request to one node ends at its ``synced``; this bounds the wait for a node
# that went away meanwhile (a whole store's diff may take a while to arrive).
TARGETED_WINDOW_S = 60.0
# Core NATS delivers at most once: a targeted request can be lost (the target's
# connection was reconnecting; a server just restarted has no route to the
# target's yet and answers "no responders"). With nothing back from the target
# this long, the request is sent again (answers are idempotent diffs); the wait
# doubles each time, so a target merely slow to answer is asked a few times at most.
REASK_S = 4.0
# After a "no responders" status: nobody got the request, so asking soon costs nothing.
NO_RESPONDERS_REASK_S = 0.5
# Bytes of state vectors per request (with document names): well under 1 MB.
SV_CHUNK_BYTES = 256 << 10


class AntiEntropy:
    """Asks for and answers state-vector exchanges over NATS."""

    def __init__(self, link: LinkHost, inbound: Inbound) -> None:
        self._link = link
        self._inbound = inbound
        self._now = asyncio.Event()
        self.rounds_answered = 0

    def soon(self) -> None:
        """Run a round as soon as possible (after a reconnect)."""
        self._now.set()

    async def periodic(self) -> None:
        """A round every ``anti_entropy_s`` (jittered), and whenever ``soon()`` asks:
        when the stream no longer holds what this node missed (see ``Inbound.log_has_gap``).
        Not at every connect: the log replays a short absence for a fraction of the
        bytes (every other node would answer with the same diffs)."""
        period = self._link.config.anti_entropy_s
        while True:
            raise_if_cancelled()
            try:
                async with asyncio.timeout(random.uniform(period / 2, period * 1.5)):
                    await self._now.wait()
            except TimeoutError:
                pass
            self._now.clear()
            try:
                await self.round()
            except (nats.errors.Error, NatsLinkError, OSError) as exc:
                raise_if_cancelled()
                log.info("NATS anti-entropy round failed (retried): %s", exc)

    async def subscribe(self, nc: Client) -> None:
        """Answer other nodes' requests from now on (to all, and to this node alone)."""
        await nc.subscribe(self._link.subjects.state_vectors, cb=self._answer)
        await nc.subscribe(self.direct(self._inbound.durable), cb=self._answer)

    def direct(self, durable: str) -> str:
        """The state-vector subject only the node of consumer ``durable`` answers."""
        return f"{self._link.subjects.state_vectors}.{durable}"

    # --- asking ------------------------------------------------------------------------

    async def round(self, target: str | None = None) -> set[str]:
        """One exchange: returns the nodes that answered in full (``synced``).

        ``target`` (a node's durable consumer name) asks that node alone, and
        ends as soon as it has answered."""
        link = self._link
        nc, _ = link.client
        store = link.store
        ours = {
            doc: await store.astate_vector(doc)
            for doc in store.documents()
            if doc not in link.local_only
        }
        chunks = _chunks(ours)
        inbox = nc.new_inbox()
        answers: asyncio.Queue[Msg] = asyncio.Queue()

        async def collect(msg: Msg) -> None:
            answers.put_nowait(msg)

        sub = await nc.subscribe(inbox, cb=collect)
        responders: set[str] = set()
        assemblies: dict[str, parts.Assembly] = {}
        pending: list[asyncio.Future[bool]] = []

        async def ask() -> None:
            for chunk in chunks:
                # ``reply`` set: this request names every document we hold.
                await link.publish_core(
                    link.subjects.state_vectors if target is None else self.direct(target),
                    StateVectors(chunk, reply=len(chunks) == 1),
                    inbox,
                )

        try:
            await ask()
            loop = asyncio.get_running_loop()
            window = link.config.answer_window_s if target is None else TARGETED_WINDOW_S
            deadline = loop.time() + window
            reask_after = REASK_S
            # Until the target's first message: when to ask it again (never for a broadcast).
            reask_at: float | None = None if target is None else loop.time() + reask_after
            while (left := deadline - loop.time()) > 0:
                wait = left if reask_at is None else max(0.0, min(left, reask_at - loop.time()))
                try:
                    async with asyncio.timeout(wait):
                        msg = await answers.get()
                except TimeoutError:
                    if reask_at is None or loop.time() >= deadline:
                        break
                    link.stats.anti_entropy_reasks += 1
                    log.info("no answer from %s yet: asking again", target)
                    await ask()
                    reask_after *= 2
                    reask_at = loop.time() + reask_after
                    continue
                if _no_responders(msg):
                    # The server knows no subscriber to the subject (yet): not a
                    # member's message, nothing to verify.
                    if reask_at is not None:
                        reask_at = min(reask_at, loop.time() + NO_RESPONDERS_REASK_S)
                    continue
                link.stats.anti_entropy_bytes_in += len(msg.data)
                link.stats.messages_in += 1
                link.stats.bytes_in += len(msg.data) + len(msg.subject)
                opened = await self._inbound.open(msg.subject, msg.data)
                if opened is None:
                    continue
                if target is not None and durable_name(opened.sender) == target:
                    reask_at = None  # its answer is under way: the window bounds it
                try:
                    frame = await self._inbound.decode(opened.body)
                    if isinstance(frame, DiffPart):
                        assembly = assemblies.setdefault(
                            opened.sender, self._inbound.new_assembly()
                        )
                        whole = await assembly.add(frame)
                        if whole is None:
                            continue
                        frame = whole
                except ProtocolError as exc:  # a broken answer: the next round heals
                    link.stats.malformed += 1
                    log.info("bad anti-entropy answer from %s: %s", opened.sender[:16], exc)
                    continue
                if isinstance(frame, Synced):
                    responders.add(opened.sender)
                    if target is not None and durable_name(opened.sender) == target:
                        break
                elif isinstance(frame, Diff):
                    pending.extend(self._inbound.apply_updates(opened.sender, frame.doc, frame))
        finally:
            for assembly in assemblies.values():
                assembly.clear()  # an answer cut short must not keep its reservation
            await sub.unsubscribe()
        for result in await asyncio.gather(*pending, return_exceptions=True):
            if isinstance(result, InvalidUpdateError):
                link.stats.malformed += 1
                log.warning("anti-entropy diff refused by the store: %s", result)
            elif isinstance(result, BaseException):
                raise result
        link.stats.anti_entropy_rounds += 1
        return responders

    # --- answering ---------------------------------------------------------------------

    async def _answer(self, msg: Msg) -> None:
        link = self._link
        link.stats.messages_in += 1
        link.stats.bytes_in += len(msg.data)
        if not msg.reply:
            return
        opened = await self._inbound.open(msg.subject, msg.data)
        if opened is None or opened.sender == link.node_id:
            return
        try:
            frame = await self._inbound.decode(opened.body, link.limits.max_documents_per_frame)
            if not isinstance(frame, StateVectors):
                raise MalformedFrameError(f"{type(frame).__name__} on the state-vector subject")
            await self._send_diffs(msg.reply, frame)
        except (MalformedFrameError, ValueError, InvalidUpdateError) as exc:
            link.stats.malformed += 1
            log.warning("bad anti-entropy request from %s: %s", opened.sender[:16], exc)
        except (nats.errors.Error, NatsLinkError, OSError) as exc:
            raise_if_cancelled()
            log.info("anti-entropy answer to %s cut short: %s", opened.sender[:16], exc)
        self.rounds_answered += 1

    async def _send_diffs(self, inbox: str, request: StateVectors) -> None:
        link = self._link
        store = link.store
        local_only = link.local_only
        docs = [d for d in store.documents() if d not in local_only]
        if not request.reply:  # a partial request: only the documents it names
            docs = [d for d in docs if d in request.docs]
        for doc in docs:
            remote = request.docs.get(doc)
            update, record = await store.adiff_with_record(doc, remote)
            if update == EMPTY_UPDATE and remote is not None:
                continue
            diff = Diff(doc, update, collected_of(doc, record))
            for frame in parts.split(diff, link.max_payload):
                await link.publish_core(inbox, frame)
        await link.publish_core(inbox, Synced())


def _no_responders(msg: Msg) -> bool:
    """Whether ``msg`` is the server's "no responders" status for a request."""
    headers = msg.headers or {}
    return headers.get(Header.STATUS) == NO_RESPONDERS_STATUS and not msg.data


def _chunks(vectors: dict[str, bytes]) -> list[dict[str, bytes]]:
    out: list[dict[str, bytes]] = [{}]
    size = 0
    for doc, sv in vectors.items():
        if out[-1] and size + len(sv) + len(doc) > SV_CHUNK_BYTES:
            out.append({})
            size = 0
        out[-1][doc] = sv
        size += len(sv) + len(doc) + 8
    return out
