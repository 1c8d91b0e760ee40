"""The NATS link: a second replication path, between sites, beside the LAN connections.

Not a ``Channel``: NATS is publish/subscribe with a durable log, not a
point-to-point pipe, so the link applies and publishes through the same store
calls the gossip layer uses and reuses its frames (``push``, ``diff``,
``diff_part``, ``svs``, ``synced``, ``reports``, ``collected``), each sealed
(``edgestate.sync.nats_seal``). docs/nats.md has the design; in short:

- publish: every commit of this node (and, on a gateway, of its LAN peers) is
  queued per document, coalesced while the previous publish is in flight, and
  published to JetStream (``<prefix>.doc.<doc>``), acknowledged by the stream.
  While the link is down the queue is kept, up to ``max_pending_bytes``.
- consume: one durable pull consumer per node over ``<prefix>.doc.>``; a batch
  is applied to the store and each message acked only once its apply committed,
  so a node cut off (or restarted) resumes from its last acked sequence.
- anti-entropy (``nats_entropy``): at connect, after each reconnect and every
  ``anti_entropy_s``, heals whatever the log no longer holds.

Ownership: ``start()`` spawns the supervisor task that (re)connects; ``close()``
cancels every task of the link and closes the NATS connection.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Iterable
from typing import Any

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import StorageType, StreamConfig
from pycrdt import merge_updates

from edgestate.errors import (
    InvalidUpdateError,
    MalformedFrameError,
    NatsLinkError,
    NatsTLSError,
)
from edgestate.store import ChangeStream, Store
from edgestate.sync import frames, parts
from edgestate.sync.config import SyncConfig
from edgestate.sync.connection import PEER_ORIGIN
from edgestate.sync.frames import Collected, Diff, Push, Reports
from edgestate.sync.membership import Membership
from edgestate.sync.nats_catchup import start_sequence
from edgestate.sync.nats_config import NatsConfig
from edgestate.sync.nats_entropy import AntiEntropy
from edgestate.sync.nats_failure import Failures, explain
from edgestate.sync.nats_host import raise_if_cancelled
from edgestate.sync.nats_inbound import ENVELOPE_OVERHEAD, NATS_ORIGIN, Inbound
from edgestate.sync.nats_seal import Sealer, Verifier
from edgestate.sync.nats_stats import NatsStats
from edgestate.sync.nats_subjects import Subjects
from edgestate.sync.report_delta import SentReports
from edgestate.sync.tasks import TaskSet

log = logging.getLogger(__name__)

# A stream ack or consumer API call that takes longer than this failed.
API_TIMEOUT_S = 5.0
# Documents whose stream lag a status shows (one stream lookup each).
MAX_STATUS_DOCS = 200
# Between connection attempts, and between retries of a failed publish.
RETRY_S = 0.5


class NatsLink:
    """Joins this node to the other sites of its cluster through NATS."""

    def __init__(
        self,
        store: Store,
        config: SyncConfig,
        *,
        node_id: str,
        cluster_id: str,
        membership: Membership,
        assembly_budget: parts.AssemblyBudget | None = None,
    ) -> None:
        assert config.nats is not None
        self.store = store
        self._sync = config
        self.local_only = config.local_only
        self.config: NatsConfig = config.nats
        self.node_id = node_id
        self.subjects = Subjects.of(cluster_id, self.config.stream)
        self._membership = membership
        self._sealer = Sealer(config.tls, node_id)
        self.limits = config.limits
        # Diffs in parts from other sites share the node's budget with the LAN links.
        self.assembly_budget = assembly_budget
        self.stats = NatsStats(servers=list(self.config.servers))
        self._failures = Failures(self.config, self.stats)
        self._tasks = TaskSet()
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._pending: dict[str, list[bytes]] = {}
        self._wake = asyncio.Event()
        self.inbound = Inbound(self, Verifier(config.tls), on_gap=lambda: self.entropy.soon())
        self.entropy = AntiEntropy(self, self.inbound)
        self.inbound.set_start(lambda: start_sequence(self, self.inbound, self.entropy))
        self.ready = asyncio.Event()
        self._closing = False
        # What the subject was last told of the member reports: each round
        # publishes only what grew, and the whole table every FULL_EVERY rounds
        # and after each (re)connect. Core NATS may drop a message for a slow or
        # new subscriber; until the next whole table its frontier only lags,
        # which makes it collect later, never wrongly (reports merge by maximum).
        self._sent_reports = SentReports()

    # --- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Start connecting (in the background: a site runs while NATS is away)."""
        stream = self.store.changes(maxsize=self._sync.limits.peer_queue)
        self._tasks.spawn(self._pump(stream))
        self._tasks.spawn(self._supervise())
        self._tasks.spawn(self.inbound.sweep_idle())

    async def close(self) -> None:
        """Stop every task of the link and close the NATS connection."""
        self._closing = True
        await self._tasks.stop(5.0)
        self.inbound.clear_assemblies()
        if self._nc is not None and not self._nc.is_closed:
            try:
                async with asyncio.timeout(API_TIMEOUT_S):
                    await self._nc.close()
            except (TimeoutError, nats.errors.Error, OSError) as exc:
                log.warning("NATS connection did not close cleanly: %s", exc)

    @property
    def max_payload(self) -> int:
        """The server's payload limit (from its INFO), less the envelope's room."""
        limit = self._nc.max_payload if self._nc is not None else 1 << 20
        return max(4096, limit - ENVELOPE_OVERHEAD)

    @property
    def client(self) -> tuple[Client, JetStreamContext]:
        """The connection (only while ``ready``)."""
        if self._nc is None or self._js is None:
            raise NatsLinkError("the NATS link is not connected")
        return self._nc, self._js

    async def _supervise(self) -> None:
        while True:
            raise_if_cancelled()
            try:
                await self._connect()
                break
            except NatsLinkError as exc:
                self.stats.last_error, self.stats.last_error_code = str(exc), exc.code
                log.warning("NATS link: %s; retrying", exc)
                await asyncio.sleep(RETRY_S * 4)
        self._tasks.spawn(self.inbound.consume())
        self._tasks.spawn(self._publish_loop())
        self._tasks.spawn(self.entropy.periodic())

    async def _connect(self) -> None:
        cfg = self.config

        async def disconnected() -> None:
            self.stats.connected = False
            self.inbound.offline()

        async def reconnected() -> None:
            self._sent_reports.reset()
            self._failures.connected()
            self.stats.connected, self.stats.reconnects = True, self.stats.reconnects + 1
            self.stats.server = self._server_url()
            self._wake.set()
            # Behind by much: one node's diff, not the replay; and heal what the
            # stream dropped meanwhile.
            self.inbound.reconnected()

        async def error(exc: Exception) -> None:
            # Every failed attempt lands here; nats-py keeps retrying (the node serves on).
            self._failures.seen(exc)

        kwargs: dict[str, Any] = {}
        if cfg.creds_file is not None:
            kwargs["user_credentials"] = str(cfg.creds_file)
        if cfg.user is not None and cfg.password_file is not None:
            kwargs["user"], kwargs["password"] = cfg.user, _secret(cfg.password_file)
        if cfg.token_file is not None:
            kwargs["token"] = _secret(cfg.token_file)
        if cfg.nkey_seed_file is not None:
            kwargs["nkeys_seed"] = str(cfg.nkey_seed_file)
        if cfg.tls:
            kwargs["tls"] = _tls_context(cfg)
        nc: Client | None = None
        try:
            nc = await nats.connect(
                list(cfg.servers),
                name=f"edgestate {self.node_id[:16]}",
                connect_timeout=int(max(1, cfg.connect_timeout_s)),
                allow_reconnect=True,
                max_reconnect_attempts=-1,
                reconnect_time_wait=1,
                disconnected_cb=disconnected,
                reconnected_cb=reconnected,
                error_cb=error,
                **kwargs,
            )
            js = nc.jetstream(timeout=API_TIMEOUT_S)
            await self._ensure_streams(js)
            # Our certificate first: receivers look a sender up by fingerprint.
            if self._sealer.cert_der is not None:
                await js.publish(self.subjects.cert(self.node_id), self._sealer.cert_der)
            await self.entropy.subscribe(nc)
            await nc.subscribe(self.subjects.reports, cb=self._on_membership)
            await nc.subscribe(self.subjects.collected, cb=self._on_membership)
        except (nats.errors.Error, OSError, TimeoutError) as exc:
            raise_if_cancelled()
            if nc is not None:
                await _close_quietly(nc)
            raise explain(exc, cfg) from exc
        self._nc, self._js = nc, js
        self._sent_reports.reset()
        self._failures.connected()
        self.inbound.connected()
        self.stats.connected, self.stats.server = True, self._server_url()
        log.info("NATS link up via %s (stream %s)", self.stats.server, self.subjects.stream)
        self.ready.set()

    def _server_url(self) -> str | None:
        url = self._nc.connected_url if self._nc is not None else None
        return url.netloc if url is not None else None

    async def _ensure_streams(self, js: JetStreamContext) -> None:
        cfg, names = self.config, self.subjects
        wanted = [
            StreamConfig(
                name=names.stream,
                subjects=[names.docs],
                storage=StorageType.FILE,
                num_replicas=cfg.replicas,
                max_age=cfg.max_age_s,
                max_bytes=cfg.max_bytes,
            ),
            StreamConfig(
                name=names.cert_stream,
                subjects=[names.certs],
                storage=StorageType.FILE,
                num_replicas=cfg.replicas,
                max_msgs_per_subject=1,
            ),
        ]
        for stream in wanted:
            try:
                await js.add_stream(stream)
            except nats.js.errors.BadRequestError:
                # It exists with other settings: ours win (retention is config).
                await js.update_stream(stream)

    # --- publishing ------------------------------------------------------------------

    async def _pump(self, stream: ChangeStream) -> None:
        while True:
            raise_if_cancelled()
            event = await stream.get()
            if event is None:
                return
            if stream.reset_overflow():
                # Commits went by unseen (the pump fell a whole queue behind): they
                # reach the other sites through their anti-entropy requests.
                self.stats.updates_dropped += 1
                log.warning("NATS publish queue overflowed; other sites heal by anti-entropy")
            if event.doc in self._sync.local_only or not self._publishes(event.origin):
                continue
            self._pending.setdefault(event.doc, []).append(event.update)
            self.stats.pending_bytes += len(event.update)
            while self.stats.pending_bytes > self.config.max_pending_bytes and self._pending:
                doc = next(iter(self._pending))
                dropped = self._pending.pop(doc)
                self.stats.pending_bytes -= sum(len(u) for u in dropped)
                self.stats.updates_dropped += len(dropped)
            self._wake.set()

    def _publishes(self, origin: str | None) -> bool:
        if origin is None or not origin.startswith((NATS_ORIGIN, PEER_ORIGIN)):
            return True  # a write of this node
        return self.config.gateway and origin.startswith(PEER_ORIGIN)

    async def _publish_loop(self) -> None:
        while True:
            raise_if_cancelled()
            await self._wake.wait()
            if self.config.coalesce_s:
                await asyncio.sleep(self.config.coalesce_s)
            self._wake.clear()
            while self._pending:
                batch, self._pending = self._pending, {}
                for doc, updates in batch.items():
                    update = updates[0] if len(updates) == 1 else merge_updates(*updates)
                    for frame in self.frames_for(doc, update):
                        await self._publish_durably(self.subjects.doc(doc), frames.encode(frame))
                    self.stats.updates_published += len(updates)
                    self.stats.pending_bytes -= sum(len(u) for u in updates)

    def frames_for(self, doc: str, update: bytes) -> list[frames.Frame]:
        """``update`` as one push, or as the parts of a diff if it is over the limit."""
        push = Push(((doc, update),))
        if len(update) + 256 <= self.max_payload:
            return [push]
        return parts.split(Diff(doc, update, None), self.max_payload)

    async def _publish_durably(self, subject: str, body: bytes) -> None:
        """Publish until the stream acknowledges it (a link that is down is waited out)."""
        data = self._sealer.seal(subject, body)
        while True:
            raise_if_cancelled()
            try:
                _, js = self.client
                await js.publish(subject, data, timeout=API_TIMEOUT_S)
            except (nats.errors.Error, NatsLinkError, OSError) as exc:
                raise_if_cancelled()
                self.stats.last_error = f"publish: {exc!r}"
                await asyncio.sleep(RETRY_S)
                continue
            self.stats.messages_out += 1
            self.stats.bytes_out += len(data) + len(subject)
            return

    async def publish_core(self, subject: str, frame: frames.Frame, reply: str = "") -> None:
        """Publish one sealed frame on a plain (not stored) subject; dropped if down."""
        nc, _ = self.client
        data = self._sealer.seal(subject, frames.encode(frame))
        await nc.publish(subject, data, reply=reply)
        self.stats.messages_out += 1
        self.stats.bytes_out += len(data) + len(subject)

    # --- status ------------------------------------------------------------------------

    async def status(self, max_docs: int = MAX_STATUS_DOCS) -> dict[str, Any]:
        """The link for operators: servers, counters, and per document the stream's
        last sequence against the last one applied here (JSON-ready)."""
        out = self.stats.snapshot()
        out.pop("acked_by_doc")
        out.update(enabled=True, stream=self.subjects.stream, subject_prefix=self.subjects.prefix)
        out["gateway"] = self.config.gateway
        docs: list[dict[str, Any]] = []
        try:
            _, js = self.client
            async with asyncio.timeout(API_TIMEOUT_S):
                info = await js.stream_info(self.subjects.stream)
                self.stats.stream_last_seq = info.state.last_seq
                out["stream_last_seq"] = info.state.last_seq
                out["stream_first_seq"] = info.state.first_seq
                out["stream_bytes"] = info.state.bytes
                names = sorted(d for d in self.store.documents() if d not in self.local_only)
                for doc in names[:max_docs]:
                    try:
                        last = await js.get_last_msg(self.subjects.stream, self.subjects.doc(doc))
                        seq = last.seq or 0
                    except nats.js.errors.NotFoundError:
                        seq = 0
                    acked = self.stats.acked_by_doc.get(doc, 0)
                    docs.append(
                        {
                            "doc": doc,
                            "stream_seq": seq,
                            "acked_seq": acked,
                            "lag": max(0, seq - acked),
                        }
                    )
        except (nats.errors.Error, NatsLinkError, OSError, TimeoutError) as exc:
            raise_if_cancelled()
            out["status_error"] = f"stream not reachable: {exc!r}"
        out["docs"] = docs
        return out

    # --- membership (garbage-collection frontier across sites) ------------------------

    def tell(
        self, *, peers: bool = False, reports: bool = False, collected: Iterable[str] = ()
    ) -> None:
        """A ``membership.Listener``: send reports / collection records to the other sites."""
        docs = list(collected)
        if self.ready.is_set() and not self._closing and (reports or docs):
            self._tasks.spawn(self._send_membership(reports, docs))

    async def _send_membership(self, reports: bool, docs: list[str]) -> None:
        try:
            if reports:
                for frame in await self._membership.report_frames(self._sent_reports):
                    await self.publish_core(self.subjects.reports, frame)
                    self.stats.reports_out += 1
            for doc in docs:
                for record in self._membership.collected_frames(doc):
                    await self.publish_core(self.subjects.collected, record)
        except (nats.errors.Error, NatsLinkError, OSError) as exc:
            raise_if_cancelled()
            log.debug("membership not sent over NATS (sent again next round): %s", exc)

    async def _on_membership(self, msg: Msg) -> None:
        self.stats.messages_in += 1
        self.stats.bytes_in += len(msg.data)
        opened = await self.inbound.open(msg.subject, msg.data)
        if opened is None or opened.sender == self.node_id:
            return
        try:
            frame = await self.inbound.decode(opened.body, self.limits.max_documents_per_frame)
            if isinstance(frame, Reports):
                await self._membership.receive_reports(
                    frame.members,
                    frame.forgotten,
                    opened.sender,
                    authenticated=self.inbound.verifier.secure,
                )
            elif isinstance(frame, Collected):
                await self._membership.receive_collected(
                    frame.doc, frame.ranges, frame.rehung, frame.floor
                )
        except (MalformedFrameError, ValueError, InvalidUpdateError) as exc:
            self.stats.malformed += 1
            log.warning("bad membership message from %s: %s", opened.sender[:16], exc)


def _secret(path: Any) -> str:
    try:
        return str(path.read_text()).strip()
    except OSError as exc:
        raise NatsLinkError(f"cannot read NATS secret {path}: {exc}") from exc


def _tls_context(cfg: NatsConfig) -> ssl.SSLContext:
    try:
        ctx = ssl.create_default_context(cafile=str(cfg.ca_cert) if cfg.ca_cert else None)
        if cfg.cert is not None and cfg.key is not None:
            ctx.load_cert_chain(cfg.cert, cfg.key)
    except (OSError, ssl.SSLError) as exc:
        raise NatsTLSError(
            f"cannot load NATS TLS material (sync.nats.ca_cert {cfg.ca_cert}, "
            f"cert {cfg.cert}, key {cfg.key}): {exc}"
        ) from exc
    return ctx


async def _close_quietly(nc: Client) -> None:
    try:
        async with asyncio.timeout(API_TIMEOUT_S):
            await nc.close()
    except (TimeoutError, nats.errors.Error, OSError):
        pass
