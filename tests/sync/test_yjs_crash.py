"""kill -9 between fan-out and fsync: the author's reconnect restores the update.

A real child process (store with durability sync + the /yjs endpoint), real
sockets on 127.0.0.1, pycrdt documents speaking y-protocols as a y-websocket
client does on reconnect (it answers the node's sync step 1 with step 2: all
the node lacks). The child holds its writer after accepting the update and
before committing it, so the kill lands in that window every time.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp
from pycrdt import Doc, Map, YSyncMessageType, read_message

from edgestate.store import Store, StoreConfig
from edgestate.sync.yjs import sync_message

CHILD = Path(__file__).with_name("yjs_crash_child.py")
WAIT_S = 10.0


@contextmanager
def child(data: Path, hold_key: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    proc = subprocess.Popen(
        [sys.executable, str(CHILD), str(data), hold_key], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("port "), f"child said {line!r} (rc={proc.poll()})"
        yield proc, f"ws://127.0.0.1:{int(line.split()[1])}/yjs/d"
    finally:
        proc.kill()
        proc.wait(WAIT_S)
        if proc.stdout is not None:
            proc.stdout.close()


async def _sync_message(ws: aiohttp.ClientWebSocketResponse, kind: int) -> bytes:
    while True:
        msg = await ws.receive(timeout=WAIT_S)
        assert msg.type == aiohttp.WSMsgType.BINARY, msg
        data = bytes(msg.data)
        if data[0] == 0 and data[1] == kind:
            return read_message(data[2:])


async def test_a_kill_after_fan_out_loses_nothing_the_author_resends(tmp_path: Path) -> None:
    data = tmp_path / "data"
    author_doc: Doc = Doc()
    author_doc["root"] = author_root = Map()
    reader_doc: Doc = Doc()
    async with aiohttp.ClientSession() as session:
        with child(data, "k") as (proc, url):
            author = await session.ws_connect(url)
            reader = await session.ws_connect(url)
            for ws in (author, reader):
                await _sync_message(ws, YSyncMessageType.SYNC_STEP1)
            author_root["k"] = b"made before the crash"
            await author.send_bytes(
                sync_message(YSyncMessageType.SYNC_UPDATE, author_doc.get_update())
            )
            reader_doc.apply_update(await _sync_message(reader, YSyncMessageType.SYNC_UPDATE))
            assert proc.stdout is not None and proc.stdout.readline() == "held\n"
            proc.kill()  # SIGKILL: the commit holding "k" never happens
            proc.wait(WAIT_S)
        assert reader_doc.get("root", type=Map).to_py() == {"k": b"made before the crash"}
        lost = Store.open(data, StoreConfig())
        try:  # the window was real: the node did not persist what the reader saw
            assert lost.get("d", "k") is None
        finally:
            lost.close()
        with child(data, "") as (_proc, url):
            # y-websocket's reconnect: the node's step 1 answered with step 2.
            author = await session.ws_connect(url)
            node_sv = await _sync_message(author, YSyncMessageType.SYNC_STEP1)
            step2 = author_doc.get_update(node_sv)
            await author.send_bytes(sync_message(YSyncMessageType.SYNC_STEP2, step2))
            late = await session.ws_connect(url)
            await _sync_message(late, YSyncMessageType.SYNC_STEP1)
            await late.send_bytes(sync_message(YSyncMessageType.SYNC_STEP1, b"\x00"))
            seen: Doc = Doc()
            root = seen.get("root", type=Map)
            for _ in range(100):  # step 2, or the update if it landed after
                if "k" in root:
                    break
                msg = await late.receive(timeout=WAIT_S)
                data_ = bytes(msg.data)
                if data_[0] == 0 and data_[1] in (1, 2):
                    seen.apply_update(read_message(data_[2:]))
            assert root.to_py() == {"k": b"made before the crash"}
            await author.close()
            await late.close()
        restored = Store.open(data, StoreConfig())
        try:
            assert restored.get("d", "k") == b"made before the crash"
        finally:
            restored.close()
