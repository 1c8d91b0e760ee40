"""The node's side of its workers' writes: the ``w`` messages of one turn of the
node's loop (every worker link's reads), queued to the store in one hand-off,
each answered (``wr``) once it is durable.

Under load a turn holds many invocations' writes; queued together they cost one
hand-off to the writer thread instead of a task, a future pair and a lock each,
and they land in the same group commit. Each stays its own atomic batch:
one invocation's refused write fails that invocation alone.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import Any

from edgestate.errors import EdgestateError, StoreError, WorkerLinkError
from edgestate.node.workers.process import WorkerProcess
from edgestate.node.workers.protocol import decode_ops
from edgestate.store import Store, WriteOp

log = logging.getLogger(__name__)


class WriteQueue:
    """The ``w`` messages every worker link read during one turn of the node's loop,
    queued to the store together when the turn ends: one hand-off, and the writes
    of both workers' reads in the same group commit."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._turn: list[tuple[WorkerProcess, dict[str, Any]]] = []

    def add(self, worker: WorkerProcess, messages: list[dict[str, Any]]) -> None:
        """Queue the writes of ``messages`` (``w``, in the order read); each is
        answered once the group commit holding it is durable, or with why not."""
        turn = self._turn
        if not turn:
            asyncio.get_running_loop().call_soon(self._submit)
        for message in messages:
            turn.append((worker, message))

    def _submit(self) -> None:
        turn, self._turn = self._turn, []
        batches: list[list[WriteOp]] = []
        queued: list[tuple[WorkerProcess, Any]] = []
        for worker, message in turn:
            try:
                batches.append(decode_ops(message.get("ops")))
            except WorkerLinkError as exc:
                worker.send(refusal(message.get("id"), exc))  # nothing of it was queued
                continue
            queued.append((worker, message.get("id")))
        if not batches:
            return
        try:
            futures = self._store.abatches(batches)
        except EdgestateError as exc:  # the store closed under a stopping node
            for worker, id_ in queued:
                worker.send(refusal(id_, exc))
            return
        for (worker, id_), future in zip(queued, futures, strict=True):
            # The node waits for these before it closes the store (WorkerPool._forget).
            worker.commits.add(future)
            future.add_done_callback(functools.partial(_answer, worker, id_))


def refusal(id_: Any, error: EdgestateError) -> dict[str, Any]:
    """The ``wr`` answer of a write that was not stored."""
    return {"t": "wr", "id": id_, "ok": False, "code": error.code, "message": str(error)}


def _answer(worker: WorkerProcess, id_: Any, future: asyncio.Future[Any]) -> None:
    worker.commits.discard(future)
    # A worker that died meanwhile gets no answer; its client saw the connection
    # close, so nothing it was told is lost.
    if future.cancelled():
        worker.send(refusal(id_, StoreError("the write was cancelled: the node is stopping")))
        return
    error = future.exception()
    if error is None:
        worker.send({"t": "wr", "id": id_, "ok": True})
    elif isinstance(error, EdgestateError):
        worker.send(refusal(id_, error))
    else:
        log.error("a write of worker %d failed: %r", worker.index, error)
        worker.send(refusal(id_, StoreError(f"the write failed: {error}")))
