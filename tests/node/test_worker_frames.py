"""The link's FrameReader over a real socket: every message of a read at once,
messages split anywhere, and each kind of broken stream named."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator

import pytest

from edgestate.errors import WorkerLinkError
from edgestate.node.workers import protocol as P

_WRITERS: list[asyncio.StreamWriter] = []  # a dropped StreamWriter closes its socket


async def _pair() -> tuple[P.FrameReader, socket.socket]:
    ours, theirs = socket.socketpair()
    reader, writer = await asyncio.open_unix_connection(sock=ours)
    _WRITERS.append(writer)
    theirs.setblocking(True)
    return P.FrameReader(reader), theirs


@pytest.fixture(autouse=True)
async def _close_writers() -> AsyncIterator[None]:
    yield
    for writer in _WRITERS:
        writer.close()
    _WRITERS.clear()


async def _all(frames: P.FrameReader) -> list[list[dict[str, object]]]:
    batches = []
    while (batch := await asyncio.wait_for(frames.batch(), 10)) is not None:
        batches.append(batch)
    return batches


async def test_one_read_of_many_messages_is_one_batch_in_order() -> None:
    frames, peer = await _pair()
    with peer:
        peer.sendall(b"".join(P.pack({"t": "w", "id": i}) for i in range(200)))
        peer.shutdown(socket.SHUT_WR)
        batches = await _all(frames)
    assert [m["id"] for b in batches for m in b] == list(range(200))
    assert len(batches) < 200  # taken together, not one await per message


async def test_messages_split_at_every_byte_and_bigger_than_a_read() -> None:
    frames, peer = await _pair()
    big = {"t": "load", "wasm": bytes(range(256)) * (3 * P.READ_CHUNK // 256 + 7)}
    data = P.pack({"t": "ready", "pid": 1}) + P.pack(big) + P.pack({"t": "ack", "id": 2})

    async def send() -> None:
        # The first two messages a byte at a time, the rest in one piece.
        cut = len(P.pack({"t": "ready", "pid": 1})) + 9
        for i in range(cut):
            peer.sendall(data[i : i + 1])
            await asyncio.sleep(0)
        await asyncio.get_running_loop().sock_sendall(peer, data[cut:])
        peer.shutdown(socket.SHUT_WR)

    with peer:
        peer.setblocking(False)
        sender = asyncio.create_task(send())
        batches = await _all(frames)
        await sender
    got = [m for b in batches for m in b]
    assert got == [{"t": "ready", "pid": 1}, big, {"t": "ack", "id": 2}]


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (P.pack({"t": "w"})[:-1], "closed inside a message"),
        (struct.pack(">I", P.MAX_MESSAGE_BYTES + 1), "is over"),
        (struct.pack(">I", 2) + b"\xc1\xc1", "not msgpack"),
        (P.pack({"t": 3}), "string 't'"),
        (struct.pack(">I", 1) + b"\x01", "string 't'"),
    ],
    ids=["truncated", "oversized", "not-msgpack", "t-not-a-string", "not-a-map"],
)
async def test_a_broken_stream_is_a_link_error_naming_what(data: bytes, error: str) -> None:
    frames, peer = await _pair()
    with peer:
        peer.sendall(P.pack({"t": "ready"}) + data)
        peer.shutdown(socket.SHUT_WR)
        with pytest.raises(WorkerLinkError, match=error):
            # The good message before it may come first, in a batch of its own.
            for _ in range(3):
                await asyncio.wait_for(frames.batch(), 10)


async def test_a_clean_end_of_stream_is_none() -> None:
    frames, peer = await _pair()
    peer.close()
    assert await asyncio.wait_for(frames.batch(), 10) is None
