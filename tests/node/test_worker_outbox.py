"""The link's Outbox (workers/protocol.py): one write per turn of the loop, in order."""

from __future__ import annotations

import asyncio
import socket

from edgestate.node.workers.protocol import FrameReader, Outbox


def test_messages_of_one_turn_go_out_together_in_order_and_a_closed_link_drops_them() -> None:
    async def main() -> None:
        ours, theirs = socket.socketpair()
        theirs.setblocking(False)
        reader, writer = await asyncio.open_unix_connection(sock=ours)
        outbox = Outbox(writer)
        try:
            for i in range(50):
                outbox.send({"t": "wr", "id": i, "ok": True})
            # Nothing written yet: the turn has not ended.
            try:
                early = theirs.recv(1 << 16)
            except BlockingIOError:
                early = b""
            assert early == b""
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            peer_reader, peer_writer = await asyncio.open_unix_connection(sock=theirs)
            frames = FrameReader(peer_reader)
            got: list[dict[str, object]] = []
            while len(got) < 50:
                batch = await asyncio.wait_for(frames.batch(), 10)
                assert batch is not None
                got += batch
            assert [m["id"] for m in got] == list(range(50))
            writer.close()
            outbox.send({"t": "wr", "id": 99})  # after close: dropped, not raised
            await asyncio.sleep(0)
            assert await asyncio.wait_for(frames.batch(), 10) is None
            peer_writer.close()
        finally:
            writer.close()
        del reader

    asyncio.run(main())


def test_before_flush_adds_its_message_to_the_same_write_without_a_flush_of_its_own() -> None:
    """A worker's metrics report rides the turn's flush: queued by the hook, after
    the turn's messages, in the same single write; a turn with nothing to say
    writes nothing."""

    async def main() -> None:
        ours, theirs = socket.socketpair()
        reader, writer = await asyncio.open_unix_connection(sock=ours)
        rows: list[int] = []
        flushes: list[int] = []

        def report() -> None:
            flushes.append(len(rows))
            if rows:
                outbox.queue({"t": "r", "inv": list(rows)})
                rows.clear()

        outbox = Outbox(writer, before_flush=report)
        writes: list[bytes] = []
        real_write = writer.write
        writer.write = lambda data: (writes.append(bytes(data)), real_write(data))[1]  # type: ignore[method-assign]
        try:
            outbox.send({"t": "w", "id": 1})
            rows.append(7)
            outbox.schedule()  # already scheduled by send: still one flush
            await asyncio.sleep(0)
            assert flushes == [1] and len(writes) == 1
            outbox.schedule()  # a turn with nothing queued and no rows
            await asyncio.sleep(0)
            assert flushes == [1, 0] and len(writes) == 1
            peer_reader, peer_writer = await asyncio.open_unix_connection(sock=theirs)
            batch = await asyncio.wait_for(FrameReader(peer_reader).batch(), 10)
            assert batch == [{"t": "w", "id": 1}, {"t": "r", "inv": [7]}]
            peer_writer.close()
        finally:
            writer.close()
        del reader

    asyncio.run(main())
