"""Cluster membership for garbage collection: reports, frontiers, collections.

Each member (store replica id) reports the newest state vector of each document
it holds; the frontier of a document is what every member has, and only history
below it is collected (edgestate.sync.frontier). Reports go to every peer right
after ``peers``, once caught up and every gc round; a collection record goes
right behind each diff of its document and to every peer when it lands.

A version-1 peer never reports: this node reports its state vectors for it
under a stand-in member id (``legacy_member_id``), retired once it reports for
itself. Forgetting a member is cluster-wide and idempotent.

The chunking of reports and collection records into frames is done by pure
functions that take the receiver's budget (``chunk_reports``,
``collected_frames``, in ``report_chunks``); what a link was already told
is not sent again (``report_delta``).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Protocol

from edgestate.errors import MalformedFrameError, UnknownMemberError
from edgestate.store import Ranges, Store, decode_state_vector
from edgestate.sync import frames
from edgestate.sync.frames import Collected, Reports
from edgestate.sync.frontier import FrontierTracker
from edgestate.sync.report_chunks import REPORT_DOCS_PER_FRAME as REPORT_DOCS_PER_FRAME
from edgestate.sync.report_chunks import chunk_reports, collected_frames
from edgestate.sync.report_delta import SentReports

log = logging.getLogger(__name__)

# Numbers (clients and clocks) one reports frame carries at most: well under
# the frame limit at 9 bytes per msgpack integer.
REPORT_NUMBERS_PER_FRAME = 1 << 20
# Where the member reports live in the store's node-local metadata.
FRONTIER_KEY = "sync.frontier"
# Member ids named in an UnknownMemberError: enough to spot a typo, a short line.
MEMBERS_SHOWN = 8

MemberReports = Mapping[int, Mapping[str, Mapping[int, int]]]


def legacy_member_id(node_id: str) -> int:
    """The member id a version-1 peer is reported under (see ``report_for_legacy``)."""
    return int.from_bytes(hashlib.sha256(node_id.encode()).digest()[:6], "big")


# Clients and clocks on the wire are below 2**53 (exact in a JSON number).
MAX_WIRE_INT = 1 << 53
# Vectors wider than this are compared off the event loop (merge) or split off
# it (reports to send): a million clients is a second of Python.
MERGE_SLICE = 16384


def _grown(held: Mapping[int, int], vector: Mapping[int, int]) -> dict[int, int]:
    """The clients of ``vector`` ahead of ``held``."""
    return {c: k for c, k in vector.items() if held.get(c, 0) < k}


def read_state_vectors(docs: Mapping[str, bytes]) -> dict[str, dict[int, int]]:
    """Decode a peer's state vectors, or say which one is broken (a
    ``MalformedFrameError``: found in hardening, a truncated one from a
    version-1 peer escaped as an IndexError and dropped the connection)."""
    out: dict[str, dict[int, int]] = {}
    for doc, sv in docs.items():
        try:
            vector = decode_state_vector(sv)
        except (IndexError, ValueError):
            raise MalformedFrameError(
                f"svs frame carries bad data: the state vector of {doc!r} is truncated or malformed"
            ) from None
        # What a reports frame may carry: relayed further, a larger number would
        # make the next peer refuse that frame.
        if any(c >= MAX_WIRE_INT or k >= MAX_WIRE_INT for c, k in vector.items()):
            raise MalformedFrameError(
                f"svs frame carries bad data: the state vector of {doc!r} has a client or "
                "clock of 2**53 or more"
            )
        out[doc] = vector
    return out


class Listener(Protocol):
    """A connection told of new reports and collections (``PeerConnection`` is one)."""

    def tell(
        self, *, peers: bool = False, reports: bool = False, collected: Iterable[str] = ()
    ) -> None:
        """Have the sender tell the peer what changed."""
        ...


class Membership:
    """This node's view of the cluster's members and what each has collected."""

    def __init__(
        self,
        store: Store,
        *,
        local_only: frozenset[str],
        grace_s: float,
        listeners: Callable[[], Iterable[Listener]],
        expire_s: float = 300.0,
    ) -> None:
        self._store = store
        # A member that never reported holding anything is dropped this long
        # after it was first heard of (FrontierTracker.expire_unsynced).
        self._expire_s = expire_s
        self._local_only = local_only
        self._listeners = listeners
        self.frontier = FrontierTracker.unpack(
            store.get_local(FRONTIER_KEY),
            store.replica_id,
            local=local_only,
            grace_s=grace_s,
        )
        self._dirty = False
        self._collected_told: dict[str, int] = {}
        self._told_forgotten = False

    # --- what peers are told ------------------------------------------------------------

    def reports_to_send(
        self, numbers_per_frame: int = REPORT_NUMBERS_PER_FRAME
    ) -> list[dict[int, dict[str, dict[int, int]]]]:
        """Member reports for peers, in chunks (see ``chunk_reports``)."""
        return chunk_reports(self.frontier.reports, self._local_only, numbers_per_frame)

    async def report_frames(self, sent: SentReports | None = None) -> list[Reports]:
        """The reports frames to send, each with the members forgotten.

        With ``sent`` (what one link was told before), only what grew since, and
        no frame at all when nothing did (see ``report_delta``)."""
        # A decoder takes MAX_PEERS ids; beyond that, the rest goes in later rounds
        # (forgetting is idempotent), newest ids first being as good as any.
        forgotten = tuple(sorted(self.frontier.forgotten)[-frames.MAX_PEERS :])
        reports: MemberReports = self.frontier.reports
        big = sum(len(v) for docs in reports.values() for v in docs.values()) > MERGE_SLICE
        if big:
            # Sorting and splitting a million-client report is a second of Python
            # (found in hardening): off the loop, on a snapshot (merge never
            # mutates a vector, so copying the maps above them is enough).
            reports = {m: dict(docs) for m, docs in reports.items()}
        if sent is not None:
            if big:
                reports, news = await asyncio.to_thread(
                    sent.delta, reports, self.frontier.forgotten, self._local_only
                )
            else:
                reports, news = sent.delta(reports, self.frontier.forgotten, self._local_only)
            if not reports and not news:
                return []
        if big:
            chunks = await asyncio.to_thread(
                chunk_reports, reports, self._local_only, REPORT_NUMBERS_PER_FRAME
            )
        else:
            chunks = chunk_reports(reports, self._local_only, REPORT_NUMBERS_PER_FRAME)
        return [Reports(chunk, forgotten) for chunk in chunks]

    def collected_docs(self) -> list[str]:
        """Replicated documents with a garbage-collection record to tell peers of."""
        out = []
        for doc in self._store.documents():
            record = self._store.gc_record(doc) if doc not in self._local_only else None
            if record is not None and record.ranges.by_client:
                out.append(doc)
        return out

    def collected_frames(self, doc: str) -> list[Collected]:
        """``doc``'s collection record as frames, split to stay under the limit."""
        record = self._store.gc_record(doc) if self._store.has_document(doc) else None
        # Under both of the decoder's limits, with room to spare.
        return collected_frames(
            record, doc, frames.MAX_RUN_NUMBERS // 2, frames.MAX_SV_CLIENTS // 2
        )

    def _collected_changes(self, docs: list[str] | None = None) -> set[str]:
        """Documents whose record changed since last told (collected here, or
        merged from a peer: passing it on spreads it hop by hop)."""
        changed = set()
        for doc in self._store.documents() if docs is None else docs:
            if doc in self._local_only or not self._store.has_document(doc):
                continue
            record = self._store.gc_record(doc)
            if record is None or not record.ranges.by_client:
                continue
            # What peers learn from it only: not the frontier, which moves each round.
            marker = hash(
                (str(record.ranges), str(record.rehung), str(sorted(record.floor.items())))
            )
            if self._collected_told.get(doc) != marker:
                self._collected_told[doc] = marker
                changed.add(doc)
        return changed

    def announce_collected(self, doc: str) -> None:
        """A collection landed on ``doc``: tell every peer now."""
        changed = self._collected_changes([doc])
        if changed:
            for conn in self._listeners():
                conn.tell(collected=changed)

    # --- rounds ---------------------------------------------------------------------------

    async def gc_round(self) -> dict[str, dict[int, int]]:
        """Report our state vectors, advance frontiers, send reports; returns new frontiers."""
        store = self._store
        own = {
            doc: decode_state_vector(await store.astate_vector(doc)) for doc in store.documents()
        }
        if self.frontier.merge({self.frontier.me: own}):
            self._dirty = True
        for member in self.frontier.expire_unsynced(self._expire_s):
            log.info("member %d never reported holding anything: no longer waited for", member)
            self._dirty = True
        # Mutated by merge() while we await below, so iterate a copy.
        # Off the loop: Inf and Sup of million-client vectors are seconds of Python
        # (found in hardening). Frontiers of rounds cleared meanwhile are dropped.
        job = self.frontier.round_job(list(own))
        frontiers, rounds = await asyncio.to_thread(job.run)
        if not self.frontier.commit(job, rounds):
            frontiers = {}
        for doc, vector in frontiers.items():
            await store.aset_gc_frontier(doc, vector)
        if self._dirty:
            self._dirty = False
            await store.aput_local(FRONTIER_KEY, self.frontier.pack())
        changed = self._collected_changes()
        for conn in self._listeners():
            conn.tell(reports=True, collected=changed)
        return frontiers

    # --- what peers tell us -----------------------------------------------------------------

    async def receive_collected(
        self,
        doc: str,
        ranges: dict[int, list[int]],
        rehung: dict[int, list[int]],
        floor: dict[int, int],
    ) -> None:
        """Merge a peer's collection record of ``doc``."""
        if doc in self._local_only:
            return
        await self._store.amerge_gc(
            doc,
            Ranges.from_wire(ranges).normalize(),
            Ranges.from_wire(rehung).normalize(),
            floor,
        )

    async def receive_reports(
        self,
        members: dict[int, dict[str, dict[int, int]]],
        forgotten: tuple[int, ...],
        source: str | None,
        *,
        authenticated: bool,
    ) -> None:
        """Merge a peer's member reports (``source`` is its node id).

        Its ``forgotten`` list is taken only from a peer the transport
        authenticated as a cluster member: in insecure mode anyone can say hello,
        and forgetting is local (the admin API)."""
        if authenticated:
            await self._learn_forgotten(forgotten, source)
        elif forgotten:
            log.debug("ignoring the forgotten list of unauthenticated peer %s", source)
        # Only documents this node holds: a peer cannot grow the table
        # with names that exist nowhere (found in review).
        held = set(self._store.documents())
        members = {m: {d: v for d, v in r.items() if d in held} for m, r in members.items()}
        if source is not None:
            # A node that spoke version 1 and now reports for itself: its
            # stand-in member would hold collection back for good.
            legacy = legacy_member_id(source)
            # Even if relayed back in this very frame (found in review).
            if legacy in self.frontier.reports:
                log.info("retiring the version-1 stand-in of %s", source[:16])
                self.frontier.forget(legacy)
                self._dirty = True
        await self._merge(members)

    async def _merge(self, members: Mapping[int, Mapping[str, Mapping[int, int]]]) -> None:
        """Fold reports into the frontier without holding the event loop for long.

        What a wide vector adds to a wide one is found off the loop (vectors are
        never mutated, see FrontierTracker.merge); only that is merged here."""
        for member, docs in members.items():
            if not docs and self.frontier.merge({member: {}}):
                self._dirty = True
            for doc, vector in docs.items():
                held = self.frontier.reports.get(member, {}).get(doc)
                if held is not None and len(vector) > MERGE_SLICE:
                    vector = await asyncio.to_thread(_grown, held, vector)
                    if not vector:
                        continue
                if self.frontier.merge({member: {doc: vector}}):
                    self._dirty = True
                await asyncio.sleep(0)

    async def report_for_legacy(
        self, node_id: str, vectors: Mapping[str, Mapping[int, int]]
    ) -> None:
        """Report a version-1 peer's state vectors for it: it never sends reports.

        Otherwise it would be no member at all, nobody's frontier would wait for
        it, and its writes could build on what others collected. Keyed by a
        48-bit id derived from its node id (it has no replica id on the wire).
        """
        member = legacy_member_id(node_id)
        # Only documents this node holds, as for reports (found in review).
        held = set(self._store.documents())
        vectors = {d: v for d, v in vectors.items() if d in held}
        await self._merge({member: vectors})

    async def _learn_forgotten(self, forgotten: tuple[int, ...], source: str | None) -> None:
        """Forget what a peer says an operator forgot (forgetting is cluster-wide)."""
        me = self.frontier.me
        if me in forgotten and not self._told_forgotten:
            # The cluster stopped waiting for us: what we hold that others lack
            # may build on history they collected. Said once, loudly; the peers
            # refuse our stale writes by name.
            self._told_forgotten = True
            log.error(
                "peer %s says this node (replica %d) was forgotten by the cluster: its "
                "data must be wiped before it rejoins",
                source,
                me,
            )
        new = [m for m in forgotten if m != me and m not in self.frontier.forgotten]
        for member in new:
            log.warning("forgetting member %d (forgotten on %s)", member, source)
            self.frontier.forget(member)
        if new:
            await self._store.aput_local(FRONTIER_KEY, self.frontier.pack())

    async def forget_member(self, replica: int) -> bool:
        """Stop holding garbage collection back for a member gone for good.

        Its writes that no other member has are lost to the cluster, and if it
        comes back it is refused as a stale replica until its data is wiped.

        True if it was forgotten now, False if it already had been (nothing
        changes). A replica id that was never a member is refused with
        :class:`UnknownMemberError` and nothing is stored: forgetting is
        permanent, so a mistyped id must not leave an entry behind.
        """
        if replica in self.frontier.forgotten:
            return False
        members = self.frontier.members
        if replica not in members:
            shown = ", ".join(map(str, members[:MEMBERS_SHOWN]))
            more = (
                f" and {len(members) - MEMBERS_SHOWN} more" if len(members) > MEMBERS_SHOWN else ""
            )
            raise UnknownMemberError(
                f"replica {replica} is not a cluster member of this node, so nothing was "
                f"forgotten (members: {shown}{more}; `edgestate members` lists them)"
            )
        known = self.frontier.forget(replica)
        await self._store.aput_local(FRONTIER_KEY, self.frontier.pack())
        return known
