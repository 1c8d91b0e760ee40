"""Big diffs in parts (protocol version 4): splitting on send, reassembly on receive.

A diff can be as large as its document (up to ``max_diff_frame_bytes``), but no
WebSocket message may be: aiohttp buffers a whole message before we see it, so
its limit is what one peer can make us hold (found in hardening: three 400 MB
frames took a node to 3 GB). A diff frame over the part size is sent as the
slices of its encoding; the receiver keeps one assembly per connection, bounded
by ``max_diff_frame_bytes``, and decodes the whole as one ``diff`` frame.
"""

from __future__ import annotations

import asyncio

from edgestate.errors import OversizedFrameError, UnexpectedFrameError
from edgestate.sync import frames
from edgestate.sync.frames import Diff, DiffPart

# Largest slice of an encoded diff per part: small enough that a frame never
# approaches the default max_frame_bytes (32 MiB), large enough that a 1 GiB
# diff is 128 frames.
DIFF_PART_BYTES = 8 << 20
# Room for a diff_part frame's own fields (type, document name, index, count).
PART_OVERHEAD = 1024
# Encoded frames over this many bytes are decoded off the event loop: msgpack
# walks them at ~1 GB/s, so a 32 MiB frame would hold the loop for ~30 ms.
DECODE_OFF_LOOP_BYTES = 1 << 20


def part_size(max_frame_bytes: int) -> int:
    """Slice size that keeps each part within ``max_frame_bytes``."""
    return max(1, min(DIFF_PART_BYTES, max_frame_bytes - PART_OVERHEAD))


def split(diff: Diff, max_frame_bytes: int) -> list[frames.Frame]:
    """``diff`` as itself when it fits in one part, else as its ``diff_part`` frames."""
    data = frames.encode(diff)
    size = part_size(max_frame_bytes)
    if len(data) <= size:
        return [diff]
    count = -(-len(data) // size)
    if count > frames.MAX_PARTS:
        raise OversizedFrameError(f"diff of {len(data)} bytes needs over {frames.MAX_PARTS} parts")
    view = memoryview(data)
    return [
        DiffPart(diff.doc, i, count, bytes(view[i * size : (i + 1) * size])) for i in range(count)
    ]


async def decode(data: bytes, **limits: int) -> frames.Frame:
    """``frames.decode``, off the event loop for big frames."""
    if len(data) > DECODE_OFF_LOOP_BYTES:
        return await asyncio.to_thread(frames.decode, data, **limits)
    return frames.decode(data, **limits)


class Assembly:
    """The one diff in parts a connection may have in flight."""

    def __init__(self, max_diff_bytes: int, max_frame_bytes: int, max_docs: int) -> None:
        self._max_diff = max_diff_bytes
        self._max_frame = max_frame_bytes
        self._max_docs = max_docs
        self._doc: str | None = None
        self._count = 0
        self._chunks: list[bytes] = []
        self._size = 0

    @property
    def open(self) -> bool:
        """Whether parts of a diff are still missing."""
        return self._doc is not None

    def clear(self) -> None:
        """Drop what was assembled (the connection ended)."""
        self._doc, self._chunks, self._size = None, [], 0

    async def add(self, part: DiffPart) -> Diff | None:
        """Take one part; the whole diff once its last part arrived."""
        if self._doc is None:
            if part.index != 0:
                raise UnexpectedFrameError(f"diff_part {part.index} of {part.doc} without part 0")
            self._doc, self._count = part.doc, part.count
        elif (part.doc, part.count, part.index) != (self._doc, self._count, len(self._chunks)):
            raise UnexpectedFrameError(
                f"diff_part {part.index}/{part.count} of {part.doc} while part "
                f"{len(self._chunks)}/{self._count} of {self._doc} is due"
            )
        self._size += len(part.data)
        if self._size > self._max_diff:
            raise OversizedFrameError(
                f"diff of {part.doc} in parts is over the {self._max_diff} limit"
            )
        self._chunks.append(part.data)
        if len(self._chunks) < self._count:
            return None
        data = b"".join(self._chunks)
        doc = self._doc
        self._doc, self._chunks, self._size = None, [], 0
        frame = await decode(
            data, max_bytes=self._max_frame, max_docs=self._max_docs, max_diff_bytes=self._max_diff
        )
        if not isinstance(frame, Diff) or frame.doc != doc:
            raise UnexpectedFrameError(f"diff_part frames of {doc} do not make a diff of it")
        return frame
