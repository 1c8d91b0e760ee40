"""schemas/worker-protocol.md against edgestate/node/workers/protocol.py."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from edgestate.errors import WorkerLinkError
from edgestate.node.workers import protocol as P
from edgestate.store import Delete, Incr, Set

SPEC = (Path(__file__).resolve().parents[2] / "schemas" / "worker-protocol.md").read_text()


def _kinds(section: str) -> list[str]:
    body = SPEC.split(f"## {section}", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| `(\w+)` \|", body, flags=re.M)


def test_the_spec_lists_every_message_kind_the_code_knows() -> None:
    assert _kinds("worker → node") == list(P.WORKER_TO_NODE)
    assert _kinds("node → worker") == list(P.NODE_TO_WORKER)


def test_op_tags_and_limit_are_the_specs() -> None:
    assert f"`[{P.OP_SET}, doc, key, value(bin)]`" in SPEC
    assert f"`[{P.OP_DELETE}, doc, key]`" in SPEC
    assert f"`[{P.OP_INCR}, doc, key, delta(int)]`" in SPEC
    assert f"{P.MAX_MESSAGE_BYTES >> 20} MiB" in SPEC


def test_ops_round_trip_and_a_malformed_one_is_refused() -> None:
    ops = [Set("d", "k", b"v"), Delete("d", "k"), Incr("d", "n", -3)]
    assert P.decode_ops(P.encode_ops(ops)) == ops
    for bad in ([[0, "d", "k", "not bytes"]], [[9, "d", "k"]], [[1, "d"]], "x"):
        with pytest.raises(WorkerLinkError):
            P.decode_ops(bad)


def test_framing_over_a_real_unix_socket(tmp_path: Path) -> None:
    async def run() -> None:
        got: list[object] = []
        done = asyncio.Event()

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            frames = P.FrameReader(reader)
            while (batch := await frames.batch()) is not None:
                got.extend(batch)
            writer.close()
            done.set()

        path = str(tmp_path / "w.sock")
        server = await asyncio.start_unix_server(serve, path)
        _, writer = await asyncio.open_unix_connection(path)
        writer.write(P.pack({"t": "w", "id": 1, "ops": P.encode_ops([Set("d", "k", b"\0")])}))
        writer.write(P.pack({"t": "ready", "pid": 7}))
        writer.close()
        await done.wait()
        server.close()
        assert got == [
            {"t": "w", "id": 1, "ops": [[P.OP_SET, "d", "k", b"\0"]]},
            {"t": "ready", "pid": 7},
        ]

    asyncio.run(run())
