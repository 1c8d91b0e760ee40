"""Cutting a peer's outbound queue into ``push`` frames: updates of one document
merged, each frame bounded by ``PUSH_CHUNK_BYTES``.

A pure step on the queue; ``PeerConnection``'s sender sends what it returns.
"""

from __future__ import annotations

import collections
from typing import NamedTuple

from pycrdt import merge_updates

from edgestate.sync.frames import Push

__all__ = ["PUSH_CHUNK_BYTES", "PushBatch", "take_push"]

# A push frame is cut at this many update bytes so frames stay well under the
# frame limit and one slow frame does not hold back everything else.
PUSH_CHUNK_BYTES = 1 << 20


class PushBatch(NamedTuple):
    """One push frame taken from the queue (None: nothing to send), the number of
    updates it carries, and whether an update too big for any push frame was met
    (the queue was then dropped)."""

    frame: Push | None
    updates: int
    oversized: bool


def take_push(queue: collections.deque[tuple[str, bytes]], *, max_update_bytes: int) -> PushBatch:
    """Pop up to ``PUSH_CHUNK_BYTES`` of ``queue``'s ``(doc, update)`` pairs into one frame.

    An update over ``max_update_bytes`` cannot go in a push frame: the queue is
    cleared (what was taken before it still goes out) and the caller resyncs.
    """
    batch: dict[str, list[bytes]] = {}
    size = 0
    oversized = False
    while queue and size < PUSH_CHUNK_BYTES:
        doc, update = queue.popleft()
        if len(update) > max_update_bytes:
            oversized = True
            queue.clear()
            break
        batch.setdefault(doc, []).append(update)
        size += len(update)
    if not batch:
        return PushBatch(None, 0, oversized)
    count = sum(len(v) for v in batch.values())
    # Merging several updates of one document is linear in their size (not in
    # the document's) and shrinks what goes on the wire.
    items = tuple(
        (doc, ups[0] if len(ups) == 1 else merge_updates(*ups)) for doc, ups in batch.items()
    )
    return PushBatch(Push(items), count, oversized)
