"""The local socket between a node and each of its invocation workers.

One ``AF_UNIX`` stream socket per worker (a socketpair the node makes and the
worker inherits). Every message is a 4-byte big-endian length and one msgpack
map whose ``t`` names its kind; ``schemas/worker-protocol.md`` is the spec (and
``tests/node/test_worker_protocol.py`` checks this module against it).

worker -> node:
    ``w``      one invocation's staged writes, applied as ONE store batch
    ``r``      invocation outcomes and API error counts, for the node's metrics
    ``ack``    a control message was applied
    ``ready``  serving on the shared API socket
    ``lq``     a request for guest log budget of one module (:mod:`.logshare`)
node -> worker:
    ``wr``     the answer to ``w``, sent after the durable group commit
    ``policy`` ``load`` ``unload``   follow the node's trust policy and modules
    ``go``     every module is loaded: start serving
    ``hb``     the node's heartbeat (:mod:`.heartbeat`): its loop is alive
    ``lg``     the answer to ``lq``: the bytes of budget granted
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable, Sequence
from typing import Any

import msgpack

from edgestate.errors import WorkerLinkError
from edgestate.store import Delete, Incr, Set, WriteOp

# Bigger than any legal message: a module bundle (the store's value limit, 1 MiB by
# default) or an invocation's staged writes (runtime.host.max_write_bytes, 8 MiB).
MAX_MESSAGE_BYTES = 64 << 20

_LEN = struct.Struct(">I")

# Op tags in a ``w`` message: [tag, doc, key] + [value] | [] | [delta].
OP_SET, OP_DELETE, OP_INCR = 0, 1, 2

# Message kinds (the ``t`` field), as the spec lists them.
WORKER_TO_NODE = ("w", "r", "ack", "ready", "lq")
NODE_TO_WORKER = ("wr", "policy", "load", "unload", "go", "lg", "hb")


def encode_ops(ops: Sequence[WriteOp]) -> list[list[Any]]:
    """The wire form of an invocation's staged writes."""
    out: list[list[Any]] = []
    for op in ops:
        if type(op) is Set:
            out.append([OP_SET, op.doc, op.key, op.value])
        elif type(op) is Incr:
            out.append([OP_INCR, op.doc, op.key, op.delta])
        else:
            assert type(op) is Delete
            out.append([OP_DELETE, op.doc, op.key])
    return out


def decode_ops(raw: Any) -> list[WriteOp]:
    """Inverse of :func:`encode_ops`; a malformed list is :class:`WorkerLinkError`."""
    ops: list[WriteOp] = []
    try:
        for item in raw:
            tag, doc, key = item[0], item[1], item[2]
            if tag == OP_SET and isinstance(item[3], bytes):
                ops.append(Set(doc, key, item[3]))
            elif tag == OP_INCR and type(item[3]) is int:
                ops.append(Incr(doc, key, item[3]))
            elif tag == OP_DELETE and len(item) == 3:
                ops.append(Delete(doc, key))
            else:
                raise ValueError(f"bad op {item!r:.80}")
    except (TypeError, IndexError, ValueError) as exc:
        raise WorkerLinkError(f"malformed write message from a worker: {exc}") from exc
    return ops


def pack(message: dict[str, Any]) -> bytes:
    """One framed message."""
    body = msgpack.packb(message, use_bin_type=True)
    return _LEN.pack(len(body)) + bytes(body)


class Outbox:
    """The sending side of a link: the messages of one turn of the event loop go
    out as one write (one system call, one wake-up of the other side), in order.

    Under load a worker finishes several invocations per turn and the node
    answers a whole group commit at once; each message was a write of its own.
    """

    def __init__(
        self, writer: asyncio.StreamWriter, before_flush: Callable[[], None] | None = None
    ) -> None:
        self._writer = writer
        self._frames: list[bytes] = []
        self._scheduled = False
        # Called at the end of the turn, before the write: the last chance to
        # queue a message of that turn (a worker's metrics report) without a
        # callback of its own.
        self._before_flush = before_flush

    def send(self, message: dict[str, Any]) -> None:
        """Queue one message; it is written when this turn of the loop ends."""
        self._frames.append(pack(message))
        self.schedule()

    def queue(self, message: dict[str, Any]) -> None:
        """Queue one message without scheduling a flush (from ``before_flush``)."""
        self._frames.append(pack(message))

    def schedule(self) -> None:
        """Make sure the end of this turn flushes (and runs ``before_flush``)."""
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        """Write what is queued now (a link that closed meanwhile drops it)."""
        self._scheduled = False
        if self._before_flush is not None:
            self._before_flush()
        frames = self._frames
        if not frames:
            return
        data = frames[0] if len(frames) == 1 else b"".join(frames)
        frames.clear()
        if not self._writer.is_closing():
            self._writer.write(data)


# What one read asks the socket for: the most a busy link holds between two turns
# of the loop (a turn's ~100 ``w`` messages of kv-echo are ~10 KiB).
READ_CHUNK = 1 << 18


class FrameReader:
    """The receiving side of a link: every message one read brought, at once.

    Under load a read holds many messages (a worker's turn of ``w`` writes, a
    group commit's ``wr`` answers); taken together, the node queues every write
    of a read to its store in one hand-off, and nobody awaits once per message.
    """

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self._reader = reader
        self._buffer = bytearray()

    async def batch(self) -> list[dict[str, Any]] | None:
        """The complete messages next in the stream (at least one), or None at a
        clean end of stream."""
        buf = self._buffer
        while True:
            messages = self._split()
            if messages:
                return messages
            want = READ_CHUNK
            if len(buf) >= _LEN.size:
                want = max(want, _LEN.unpack_from(buf)[0] + _LEN.size - len(buf))
            data = await self._reader.read(want)
            if not data:
                if buf:
                    raise WorkerLinkError("the worker socket closed inside a message")
                return None
            buf += data

    def _split(self) -> list[dict[str, Any]]:
        buf = self._buffer
        messages: list[dict[str, Any]] = []
        at, end = 0, len(buf)
        with memoryview(buf) as view:  # released before the buffer shrinks
            while end - at >= _LEN.size:
                (size,) = _LEN.unpack_from(view, at)
                if size > MAX_MESSAGE_BYTES:
                    raise WorkerLinkError(
                        f"worker message of {size} bytes is over {MAX_MESSAGE_BYTES}"
                    )
                start = at + _LEN.size
                if end - start < size:
                    break
                messages.append(_unpack(view[start : start + size]))
                at = start + size
        if at:
            del buf[:at]
        return messages


def _unpack(body: bytes | memoryview) -> dict[str, Any]:
    try:
        message = msgpack.unpackb(body, raw=False)
    except (ValueError, msgpack.UnpackException) as exc:
        raise WorkerLinkError(f"worker message is not msgpack: {exc}") from exc
    if not isinstance(message, dict) or not isinstance(message.get("t"), str):
        raise WorkerLinkError("worker message is not a map with a string 't'")
    return message
