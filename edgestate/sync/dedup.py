"""Recently received push updates, by digest: drop duplicate copies early and do
not relay an update back to a peer that already sent it to us.

In a bounded mesh an update floods along every link, so a node receives a copy
from most of its links (measured at 60 nodes, ``max_peers = 8``: 6 copies per
receiver for a lone write, docs/mesh.md). Each copy used to go through the store's
writer thread only to apply as a no-op, and the event loop that ten nodes of a
process share paid for it in every hop's latency. Copies are byte-identical (a
node relays what its writer accepted, and pycrdt encodes the same structs the
same way), so a digest of ``(doc, update)`` recognises them before the writer.

Dropping a copy is safe: the first copy was already submitted to the store
(its outcome, applied, held for missing dependencies or refused, is the same
for identical bytes), and anti-entropy still compares state vectors. Only
``push`` updates are remembered; diffs are computed per peer and always applied.
"""

from __future__ import annotations

import collections
import hashlib
from collections.abc import Callable, Iterable

__all__ = ["RECENT_UPDATES", "RecentUpdates", "covered_by", "digest"]

# Digests remembered: copies of one update arrive within a few hops' time (tens of
# milliseconds), so this covers seconds of traffic even at thousands of updates/s,
# for about 4096 * ~200 bytes = under 1 MiB per node.
RECENT_UPDATES = 4096
# Updates bigger than this are not digested: copies of big updates are rare (a
# push is merged per batch, so big ones seldom repeat byte for byte) and hashing
# them costs more than the writer's no-op apply saves.
MAX_DIGESTED_BYTES = 64 << 10


def digest(doc: str, update: bytes) -> bytes | None:
    """The key of one ``(doc, update)``, or None when it is not worth remembering."""
    if len(update) > MAX_DIGESTED_BYTES:
        return None
    h = hashlib.blake2b(doc.encode(), digest_size=16)
    h.update(b"\x00")
    h.update(update)
    return h.digest()


class RecentUpdates:
    """A bounded, least-recently-seen-first table: update digest -> the node ids
    that sent us that update. Keys are :func:`digest`'s, computed once per update
    by the caller (a push is checked, then remembered: one hash, not two)."""

    def __init__(self, capacity: int = RECENT_UPDATES) -> None:
        self._capacity = capacity
        self._senders: collections.OrderedDict[bytes, set[str]] = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self._senders)

    def duplicate(self, key: bytes | None, sender: str | None) -> bool:
        """True if the update of ``key`` was received before (drop this copy;
        ``sender`` is noted as holding it); False for a new one, to apply and then
        :meth:`remember`. A None key (not digested) is never a duplicate."""
        senders = self._senders.get(key) if key is not None else None
        if senders is None:
            return False
        if sender is not None:
            senders.add(sender)
        return True

    def remember(self, key: bytes | None, sender: str | None) -> None:
        """Note an update submitted to the store: copies that follow are duplicates.
        Called only once it is submitted, so a copy refused before that (a peer
        over its document limit) does not make the next peer's copy a duplicate."""
        if key is None or self._capacity <= 0:
            return
        senders = self._senders.get(key)
        if senders is None:
            senders = self._senders[key] = set()
            while len(self._senders) > self._capacity:
                self._senders.popitem(last=False)
        if sender is not None:
            senders.add(sender)

    def holders(self, key: bytes | None) -> frozenset[str]:
        """The node ids that sent us the update of ``key`` (they need no relay of it)."""
        senders = self._senders.get(key) if key is not None else None
        return frozenset(senders) if senders else frozenset()


def covered_by(
    holders: Iterable[str], neighbors: Callable[[str], frozenset[str]]
) -> frozenset[str]:
    """The peers a relay can skip because of ``holders`` (peers that sent us the
    update): the holders, and each holder's own peers (``neighbors``).

    Safe for the reason skipping the sender's peers is: a node holding an update
    sends it to each of its peers except those covered by a node that held it
    earlier, and so on back to the writer, which sends it to all its peers; so
    every peer of a holder gets it. A stale ``peers`` frame (a link just gone)
    can miss one, which anti-entropy heals, as before.
    """
    out: set[str] = set()
    for node_id in holders:
        out.add(node_id)
        out |= neighbors(node_id)
    return frozenset(out)
