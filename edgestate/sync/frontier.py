"""The stable frontier: what every cluster member has, proven one round late.

Garbage collection (edgestate.store.gc_rule) may drop an overwritten map entry only
once no replica can still send a write that builds on it. Each node gossips, for
every member it knows of (keyed by store replica id, stable across restarts), the
newest state vector per document that member reported; reports merge by
componentwise max, so gossip order does not matter and a relayed report is as
good as a direct one.

Per document, each round computes Inf (componentwise min over all members) and
Sup (componentwise max). The frontier is the Inf of the newest earlier round t1
whose Sup is covered by today's Inf. Why that is safe: an entry is collected only
if the write that overwrote it is in Inf(t1), so every member had that write when
it sent its t1 report; any write a member made before receiving it is in that
member's t1 report, so in Sup(t1), so (Inf(now) >= Sup(t1)) already here. No
write that could name a collected entry as its origin is still on its way.

Two guards close the race with a member nobody has heard from yet (a node that
joined and wrote before its first report spread): a new member resets every
document's rounds, and a round counts only once it is ``grace_s`` old, much
longer than a report takes to cross the cluster (nodes report on connect and
every round).

Membership only grows: a node that goes away holds every frontier back until an
operator forgets it (:meth:`FrontierTracker.forget`). That is the price of never
losing a write a partitioned member made.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import msgpack

Vector = dict[int, int]
# (when, Inf, Sup) of one round of one document.
Round = tuple[float, Vector, Vector]

# Rounds past the grace period kept per document while waiting for Inf to catch up.
MAX_ROUNDS = 64


def _min(vectors: list[Vector]) -> Vector:
    clients = set().union(*vectors)
    return {c: min(v.get(c, 0) for v in vectors) for c in clients}


def _max(vectors: list[Vector]) -> Vector:
    clients = set().union(*vectors)
    return {c: max(v.get(c, 0) for v in vectors) for c in clients}


def covers(a: Mapping[int, int], b: Mapping[int, int]) -> bool:
    """True if state vector ``a`` has everything ``b`` has."""
    return all(a.get(c, 0) >= clock for c, clock in b.items())


@dataclass(slots=True)
class FrontierTracker:
    """Member reports and per-document rounds; see the module docstring."""

    me: int
    reports: dict[int, dict[str, Vector]] = field(default_factory=dict)
    forgotten: set[int] = field(default_factory=set)
    # Documents this node does not replicate: it is their only member.
    local: frozenset[str] = frozenset()
    grace_s: float = 60.0
    # Members that reported nothing but empty vectors so far -> wall-clock time
    # first heard of (see ``expire_unsynced``).
    unsynced: dict[int, float] = field(default_factory=dict)
    _rounds: dict[str, list[Round]] = field(default_factory=dict)
    # Bumped whenever the rounds are cleared: a round computed off the loop from
    # rounds that were cleared meanwhile is no evidence (see ``commit``).
    _epoch: int = 0

    def __post_init__(self) -> None:
        self.reports.setdefault(self.me, {})

    @property
    def members(self) -> list[int]:
        return sorted(self.reports)

    def merge(self, reports: Mapping[int, Mapping[str, Mapping[int, int]]]) -> bool:
        """Fold in reports from a peer; True if anything new was learned."""
        changed = False
        for member, docs in reports.items():
            if member in self.forgotten:
                continue
            mine = self.reports.get(member)
            if mine is None:
                mine = self.reports[member] = {}
                changed = True
                self._clear_rounds()  # rounds without it are no evidence about it
                if member != self.me:
                    self.unsynced[member] = time.time()
            if member in self.unsynced and any(docs.values()):
                del self.unsynced[member]
            for doc, vector in docs.items():
                old = mine.get(doc)
                if old is None:
                    # Even an empty vector is a report: "I hold nothing of it".
                    mine[doc] = dict(vector)
                    changed = True
                else:
                    # Linear in the report plus one C-level copy (found in
                    # hardening: a 1M-client vector in 16 frames was rebuilt in
                    # Python per frame, 9 s of loop). Copied, never mutated: a
                    # round may read these vectors from another thread.
                    grown = {c: k for c, k in vector.items() if old.get(c, 0) < k}
                    if grown:
                        mine[doc] = {**old, **grown}
                        changed = True
        return changed

    def forget(self, member: int) -> bool:
        """Stop waiting for ``member`` (gone for good); True if it was a member."""
        if member == self.me:
            raise ValueError("a node cannot forget itself")
        self.forgotten.add(member)
        self._clear_rounds()  # rounds computed with it are no evidence without it
        return self.reports.pop(member, None) is not None

    def expire_unsynced(self, max_age_s: float, now: float | None = None) -> list[int]:
        """Drop members that never reported holding anything, ``max_age_s`` after
        first heard of; returns them.

        Found in hardening: connections that said hello and one empty state
        vector (fuzzers, half-configured nodes) stayed members for good, and
        every frontier waited for them. A member that holds nothing has no
        history a write of its could build on; one that comes back is a new
        member. Not ``forget``: it is not refused afterwards."""
        now = time.time() if now is None else now
        gone = [m for m, at in self.unsynced.items() if now - at >= max_age_s]
        for member in gone:
            del self.unsynced[member]
            self.reports.pop(member, None)
        if gone:
            self._clear_rounds()  # rounds computed with them are no evidence without
        return gone

    def _clear_rounds(self) -> None:
        self._rounds.clear()
        self._epoch += 1

    def round(self, docs: Iterable[str], now: float | None = None) -> dict[str, Vector]:
        """Record one round for ``docs``; return each document's new frontier, if any."""
        job = self.round_job(docs, now)
        out, rounds = job.run()
        self.commit(job, rounds)
        return out

    def round_job(self, docs: Iterable[str], now: float | None = None) -> RoundJob:
        """What one round needs, as a snapshot ``RoundJob.run`` may work on in
        another thread (vectors are never mutated, see ``merge``)."""
        inputs: dict[str, list[Vector] | None] = {}
        for doc in docs:
            vectors = (
                [self.reports[self.me].get(doc)]
                if doc in self.local
                else [r.get(doc) for r in self.reports.values()]
            )
            present = [v for v in vectors if v is not None]
            # A member that never reported this document may hold writes to it.
            inputs[doc] = present if len(present) == len(vectors) else None
        return RoundJob(
            time.monotonic() if now is None else now,
            self.grace_s,
            self._epoch,
            inputs,
            {doc: list(self._rounds.get(doc, ())) for doc in inputs},
        )

    def commit(self, job: RoundJob, rounds: dict[str, list[Round] | None]) -> bool:
        """Keep a job's rounds; False (nothing kept) if the rounds were cleared since."""
        if job.epoch != self._epoch:
            return False
        for doc, kept in rounds.items():
            if kept is None:
                self._rounds.pop(doc, None)
            else:
                self._rounds[doc] = kept
        return True

    def pack(self) -> bytes:
        """Members, reports and forgotten ids, for the store's local metadata."""
        return bytes(
            msgpack.packb(
                {
                    "me": self.me,
                    "reports": self.reports,
                    "forgotten": sorted(self.forgotten),
                    "unsynced": self.unsynced,
                }
            )
        )

    @classmethod
    def unpack(
        cls,
        raw: bytes | None,
        me: int,
        local: frozenset[str] = frozenset(),
        grace_s: float = 60.0,
    ) -> FrontierTracker:
        """Restore a packed tracker (a fresh one if ``raw`` is None)."""
        if raw is None:
            return cls(me, local=local, grace_s=grace_s)
        body = msgpack.unpackb(raw, strict_map_key=False)
        reports = body["reports"]
        # Packed before members could expire: the empty ones start their wait now.
        unsynced = body.get("unsynced") or {
            m: time.time() for m, docs in reports.items() if m != me and not any(docs.values())
        }
        return cls(me, reports, set(body["forgotten"]), local, grace_s, unsynced)


@dataclass(frozen=True, slots=True)
class RoundJob:
    """One round's inputs (see ``FrontierTracker.round_job``); ``run`` is pure."""

    now: float
    grace_s: float
    epoch: int
    inputs: dict[str, list[Vector] | None]
    rounds: dict[str, list[Round]]

    def run(self) -> tuple[dict[str, Vector], dict[str, list[Round] | None]]:
        """New frontiers and each document's rounds afterwards (None: dropped)."""
        now = self.now
        out: dict[str, Vector] = {}
        after: dict[str, list[Round] | None] = {}
        for doc, present in self.inputs.items():
            if present is None:
                after[doc] = None
                continue
            inf, sup = _min(present), _max(present)
            rounds = list(self.rounds[doc])
            # Only earlier rounds count: a Yjs client or peer racing this very
            # round gets one round of slack even when every report agrees.
            best = None
            for i, (at, _, sup1) in enumerate(rounds):
                if now - at >= self.grace_s and covers(inf, sup1):
                    best = i
            if best is not None:
                out[doc] = rounds[best][1]
                del rounds[: best + 1]
            rounds.append((now, inf, sup))
            # Young rounds all stay (else a grace longer than MAX_ROUNDS rounds
            # would never be reached); of the aged ones, the newest MAX_ROUNDS.
            aged = sum(1 for at, _, _ in rounds if now - at >= self.grace_s)
            del rounds[: max(0, aged - MAX_ROUNDS)]
            after[doc] = rounds
        return out, after
