"""Big diffs in parts (protocol version 4): splitting on send, reassembly on receive.

A diff can be as large as its document (up to ``max_diff_frame_bytes``), but no
WebSocket message may be: aiohttp buffers a whole message before we see it, so
its limit is what one peer can make us hold (found in hardening: three 400 MB
frames took a node to 3 GB). A diff frame over the part size is sent as the
slices of its encoding; the receiver keeps one assembly per connection, bounded
by ``max_diff_frame_bytes``, and decodes the whole as one ``diff`` frame.

All assemblies of one node together are bounded too (``AssemblyBudget``,
``limits.max_assembly_bytes``): with a bounded mesh a node has up to ~17 links,
and each could otherwise hold a 1 GiB diff in parts at once.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import Callable

from edgestate.errors import AssemblyBusyError, OversizedFrameError, UnexpectedFrameError
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
# How long a diff in parts waits for room in the node-wide budget before its
# connection is closed "try again later": long enough for another peer's big
# diff to finish on a slow link, short of the peers' heartbeat timeouts.
ASSEMBLY_WAIT_S = 10.0  # the default of limits.assembly_wait_s


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


class AssemblyBudget:
    """Bytes every diff in parts being reassembled on this node may hold together.

    An assembly reserves its whole declared size (part 0's size times the part
    count) before it keeps part 0, all or nothing and first come first served, so
    two assemblies can never each hold half and wait for each other. Waiting
    stops reading that peer's frames (TCP pushes back); past ``wait_s`` its
    connection is closed "try again later" and anti-entropy brings the diff later.
    """

    def __init__(
        self,
        max_bytes: int,
        wait_s: float = ASSEMBLY_WAIT_S,
        on_wait: Callable[[], None] | None = None,
    ) -> None:
        self.max_bytes = max_bytes
        self._wait_s = wait_s
        self._on_wait = on_wait
        self.used = 0
        self._waiters: collections.deque[tuple[int, asyncio.Future[None]]] = collections.deque()

    async def reserve(self, size: int, what: str) -> None:
        """Hold ``size`` bytes, waiting up to ``wait_s`` for them; raise if they never fit."""
        if size > self.max_bytes:
            raise OversizedFrameError(
                f"{what} declares {size} bytes, over the node's {self.max_bytes} for diffs in parts"
            )
        if not self._waiters and self.used + size <= self.max_bytes:
            self.used += size
            return
        entry: tuple[int, asyncio.Future[None]] = (size, asyncio.get_running_loop().create_future())
        self._waiters.append(entry)
        if self._on_wait is not None:
            self._on_wait()
        try:
            async with asyncio.timeout(self._wait_s):
                await entry[1]
        except TimeoutError:
            self._abandon(entry)
            raise AssemblyBusyError(
                f"{what}: {self.used} of the node's {self.max_bytes} bytes for diffs in parts "
                f"stayed held by other peers' diffs for {self._wait_s:g} s"
            ) from None
        except BaseException:
            self._abandon(entry)
            raise

    def release(self, size: int) -> None:
        """Give back what ``reserve`` held."""
        self.used = max(0, self.used - size)
        self._grant()

    def _abandon(self, entry: tuple[int, asyncio.Future[None]]) -> None:
        size, waiter = entry
        if waiter.done() and not waiter.cancelled():
            self.release(size)  # granted just as its wait ended
            return
        waiter.cancel()
        with contextlib.suppress(ValueError):
            self._waiters.remove(entry)
        self._grant()  # the next in line may fit now

    def _grant(self) -> None:
        while self._waiters and self.used + self._waiters[0][0] <= self.max_bytes:
            size, waiter = self._waiters.popleft()
            if waiter.done():
                continue
            self.used += size
            waiter.set_result(None)


class Assembly:
    """The one diff in parts a connection may have in flight."""

    def __init__(
        self,
        max_diff_bytes: int,
        max_frame_bytes: int,
        max_docs: int,
        budget: AssemblyBudget | None = None,
    ) -> None:
        self._max_diff = max_diff_bytes
        self._max_frame = max_frame_bytes
        self._max_docs = max_docs
        self._budget = budget
        self._reserved = 0  # bytes held in the budget for the diff in flight
        self._waiting = False  # part 0 waits for room in the budget
        self._generation = 0  # bumped by clear(): a wait that outlived it gives back
        self._doc: str | None = None
        self._count = 0
        self._chunks: list[bytes] = []
        self._size = 0

    @property
    def open(self) -> bool:
        """Whether parts of a diff are still missing."""
        return self._doc is not None

    @property
    def waiting(self) -> bool:
        """Whether part 0 is waiting for room in the node-wide budget (not idle)."""
        return self._waiting

    def clear(self) -> None:
        """Drop what was assembled (the connection ended)."""
        self._doc, self._chunks, self._size = None, [], 0
        self._generation += 1
        self._give_back()

    def _give_back(self) -> None:
        if self._budget is not None and self._reserved:
            self._budget.release(self._reserved)
        self._reserved = 0

    async def add(self, part: DiffPart) -> Diff | None:
        """Take one part; the whole diff once its last part arrived."""
        if self._doc is None:
            if part.index != 0:
                raise UnexpectedFrameError(f"diff_part {part.index} of {part.doc} without part 0")
            # Every part but the last is as large as the first (schemas/sync-protocol.md).
            declared = min(part.count * len(part.data), self._max_diff)
            if self._budget is not None:
                generation, self._waiting = self._generation, True
                try:
                    await self._budget.reserve(declared, f"diff of {part.doc} in parts")
                finally:
                    self._waiting = False
                if generation != self._generation:  # dropped meanwhile by its owner
                    self._budget.release(declared)
                    raise UnexpectedFrameError(f"diff of {part.doc} in parts was dropped")
                self._reserved = declared
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
        if self._budget is not None and self._size > self._reserved:
            raise OversizedFrameError(
                f"diff of {part.doc} in parts grew past the {self._reserved} bytes its "
                f"first part declared (a part larger than part 0)"
            )
        self._chunks.append(part.data)
        if len(self._chunks) < self._count:
            return None
        data = b"".join(self._chunks)
        doc = self._doc
        self._doc, self._chunks, self._size = None, [], 0
        try:
            frame = await decode(
                data,
                max_bytes=self._max_frame,
                max_docs=self._max_docs,
                max_diff_bytes=self._max_diff,
            )
        finally:
            # Held until the joined buffer is decoded (the frame then refers to
            # its own copy of the update).
            del data
            self._give_back()
        if not isinstance(frame, Diff) or frame.doc != doc:
            raise UnexpectedFrameError(f"diff_part frames of {doc} do not make a diff of it")
        return frame
