"""What one link was last told of the member reports: each gc round sends only what grew.

Every gc round a node told each of its links its whole table of member reports:
every member's state vector of every document, N members times N writers' clocks
at N nodes, decoded, checked and merged by every peer every round. At 60 nodes
that was most of a node's idle CPU (docs/mesh.md, where the CPU goes). Reports
merge by componentwise maximum and a vector may be split by client across
frames (the protocol's rule since version 2), so what a peer already has from
this link need not travel again: a round sends, per member and document, only
the clients whose clock grew since this link last heard, and no frame at all
when nothing grew. Nor is what the peer itself told us on that link: in a mesh
a member's news reaches a node over several links in the same round.

A link is reliable and ordered while it lasts; a new connection starts from
nothing. The table is still sent whole at connect, once caught up (the peer may
have dropped reports it held before its state exchange: ``gossip``), and every
``FULL_EVERY`` rounds, so a report lost to anything unforeseen heals.

Cheap when nothing changed: ``FrontierTracker.merge`` never mutates a vector, it
replaces it, so a vector still the same object as the one last sent is skipped
without reading it.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

Vector = Mapping[int, int]
# Every this many rounds a link is sent the whole table again (a minute at the
# default 5 s gc round): the safety net above, at a twelfth of the old cost.
FULL_EVERY = 12


class SentReports:
    """The reports one link was sent, to send it only what grew (see module)."""

    def __init__(self, full_every: int = FULL_EVERY) -> None:
        self._full_every = full_every
        self._sent: dict[int, dict[str, Vector]] = {}
        self._forgotten: frozenset[int] | None = None
        self._rounds = 0

    def reset(self) -> None:
        """Send the whole table next time (a peer that may have dropped some)."""
        self._sent.clear()
        self._forgotten = None
        self._rounds = 0

    def heard(self, members: Mapping[int, Mapping[str, Vector]]) -> None:
        """The peer told us these reports: it holds them, so they are not sent
        back to it (in a mesh a member's news reaches a node over several links
        in one round; each of them need not hear it again from this node)."""
        sent = self._sent
        for member, docs in members.items():
            told = sent.get(member)
            if told is None:
                # Not yet sent whole: what else it holds of the member is unknown.
                continue
            for doc, vector in docs.items():
                old = told.get(doc)
                if old is None:
                    continue
                grown = {c: k for c, k in vector.items() if old.get(c, -1) < k}
                if grown:
                    told[doc] = {**old, **grown}

    def delta(
        self,
        reports: Mapping[int, Mapping[str, Vector]],
        forgotten: Collection[int],
        local_only: Collection[str] = (),
    ) -> tuple[dict[int, dict[str, dict[int, int]]], bool]:
        """What of ``reports`` this link lacks, and whether ``forgotten`` changed
        since it was last told; both are then taken as sent.

        A member new to the link is sent whole (an empty report too: a member is
        news before it holds anything); a known one only with the documents and
        clients that grew. Members gone from ``reports`` (forgotten, expired)
        are dropped here too. Local-only documents never leave the node."""
        self._rounds += 1
        if self._rounds > self._full_every:
            self.reset()
            self._rounds = 1
        out: dict[int, dict[str, dict[int, int]]] = {}
        sent = self._sent
        for member, docs in reports.items():
            told = sent.get(member)
            if told is None:
                told = sent[member] = {}
                out[member] = {}
            grown_docs: dict[str, dict[int, int]] = {}
            for doc, vector in docs.items():
                if doc in local_only:
                    continue
                old = told.get(doc)
                if old is vector:
                    continue
                if old is None:
                    grown = dict(vector)
                else:
                    grown = {c: k for c, k in vector.items() if old.get(c, -1) < k}
                told[doc] = vector
                if grown or old is None:
                    grown_docs[doc] = grown
            if grown_docs:
                out.setdefault(member, {}).update(grown_docs)
        for member in [m for m in sent if m not in reports]:
            del sent[member]
        now = frozenset(forgotten)
        forgotten_changed = now != self._forgotten
        self._forgotten = now
        return out, forgotten_changed
