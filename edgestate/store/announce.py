"""Announcing a remote update at submission, before the writer has taken it.

A Yjs client's or a peer's update reaches the store's writer through a queue and
a thread hop (tens of microseconds, more on a busy box), and early listeners
heard it only once the writer had integrated it. For a live Yjs session that hop
is most of a node's share of client-to-client latency (docs/yjs.md). A *submit
listener* hears the update on the submitting thread (the event loop) as soon as
:meth:`Store.submit_update <edgestate.store.Store.submit_update>` queues it, so the
``/yjs`` endpoint can hand it to the document's other clients, and the sync layer
a Yjs client's update to its peers, in the same turn.

Only an update the writer would take is announced: :func:`announceable` runs, on
the caller's thread, every check of the writer that needs no document state (the
v1 encoding, every struct's content type, truncation, every map key against the
key rule, pycrdt's own decoding), and declines what needs state: a document with
collected history (a stale replica's update is refused there, and one announced
would poison every client it reached), a collector's record, a big update (its
walk would stall the loop). What it declines goes the old way: heard by early
listeners once accepted. An update the writer still refuses after all (the store
failing, a document deleted meanwhile) was only ever handed to holders that treat
it as the author does: a CRDT update they keep, and that its author keeps and
resends until it is synced.

Each resulting :class:`~edgestate.store.types.ChangeEvent` says ``announced``, so
a listener that took the update at submission skips its later event.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from edgestate.errors import EdgestateError
from edgestate.store import keys as K
from edgestate.store.codec import Struct, check_v1_update, walk
from edgestate.store.updates import end_clocks

if TYPE_CHECKING:
    from edgestate.store.gc import GcState

# (doc, update, origin), on the submitting thread; keep it quick.
SubmitListener = Callable[[str, bytes, str], None]
# Past this an update is not walked on the caller's thread: a sync step 2 or a
# peer's diff can be megabytes (the walk costs about as much as applying it).
MAX_ANNOUNCED_BYTES = 64 << 10


@dataclass(frozen=True, slots=True)
class Walked:
    """What the walk of an announced update found that the writer needs too, so
    it does not walk the update again: each client block's (client, first clock)
    and (client, end clock), in block order."""

    blocks: list[tuple[int, int]]
    ends: list[tuple[int, int]]


def announceable(update: bytes, gc_state: GcState | None, max_key_bytes: int) -> Walked | None:
    """The update's walk if the writer would take ``update`` whatever the document
    holds, as far as can be told without the document (see the module docstring);
    None if not. ``gc_state``: the writer's collection state of the document, read
    from another thread (a collection landing meanwhile is caught by the writer's
    own stale check, which walks the update itself)."""
    if len(update) > MAX_ANNOUNCED_BYTES or (gc_state is not None and gc_state.ranges.by_client):
        return None
    from pycrdt import get_state  # here: a read-only store never imports pycrdt

    structs: dict[int, list[Struct]] = {}
    block_ends: list[int] = []
    try:
        check_v1_update(update)
        blocks = walk(update, structs, block_ends)[0]
        get_state(update)  # what pycrdt decodes that the walk skips (the delete set)
        for run in structs.values():
            for struct in run:
                if struct.sub is not None:
                    K.encode_key(struct.sub, max_key_bytes)
    except (EdgestateError, IndexError, ValueError):
        return None
    return Walked(blocks, end_clocks(blocks, block_ends))
