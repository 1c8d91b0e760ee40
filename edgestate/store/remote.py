"""The checks around integrating a remote update into a live CRDT: a stale
replica's update and one writing a key this store cannot hold are refused.

Used by the ``apply`` job (:mod:`edgestate.store.jobs`) and by the causal hold
when it drains (:mod:`edgestate.store.hold`); on the writer thread only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from edgestate.errors import EdgestateError, InvalidUpdateError, StaleReplicaError
from edgestate.store import keys as K
from edgestate.store.gc_rule import parse, stale_in

if TYPE_CHECKING:
    from edgestate.store.crdt import CrdtDocument
    from edgestate.store.gc import GcState
    from edgestate.store.group import WriterState


def blocks_of_collected(
    crdt: CrdtDocument, update: bytes, state: GcState
) -> list[tuple[int, int]] | None:
    """``update_blocks`` for a document with collected history, refusing a stale
    update in the same parse (found re-reading the change: it was parsed twice
    on the sync path)."""
    headers: list[tuple[int, int]] = []
    try:
        clients, _ = parse(update, headers)
    except IndexError:
        return None  # truncated: pycrdt refuses it with its own error
    except ValueError as exc:
        raise InvalidUpdateError(f"update holds a struct this store refuses: {exc}") from exc
    known = crdt.clocks()
    why = stale_in(clients, state.ranges, state.rehung, known)
    if why is not None:
        raise StaleReplicaError(f"update for {crdt.name!r} refused: {why}")
    return headers


def apply_checked(
    w: WriterState,
    crdt: CrdtDocument,
    update: bytes,
    stale_checked: bool = False,
    ends: list[tuple[int, int]] | None = None,
) -> tuple[bytes | None, set[str]]:
    """Apply a remote update, refusing one that writes a key this store cannot hold.

    Found in review: a key that is empty or over max_key_bytes (from a peer or a
    Yjs client) broke the materialized table -- an LMDB key over 511 bytes even
    failed the whole group commit. pycrdt has already integrated the update in
    memory, so on refusal the CRDT is dropped and rebuilt from the log.
    ``ends`` goes to :meth:`CrdtDocument.apply_remote`.
    """
    # Here too, not only at the door: a held update is drained after
    # collections that happened while it waited.
    if not stale_checked:
        state = w.gc.get(crdt.name)
        if state is not None and state.ranges.by_client:
            blocks_of_collected(crdt, update, state)
    added, changed = crdt.apply_remote(update, ends)
    for key in changed:
        try:
            K.encode_key(key, w.config.max_key_bytes)
        except EdgestateError as exc:
            w.docs.pop(crdt.name, None)
            raise InvalidUpdateError(
                f"update for {crdt.name!r} writes a key this store refuses: {exc}"
            ) from exc
    return added, changed
