"""``Store.abatches``: independent atomic batches queued in one hand-off to the
writer (how a node queues the writes of one read of a worker's socket)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from edgestate.errors import StoreClosedError, UnknownDocumentError, WrongTypeError
from edgestate.store import Delete, Incr, Set, Store

CHILD = Path(__file__).with_name("crash_abatches.py")


async def test_each_batch_settles_on_its_own_and_a_refused_one_fails_alone(
    store: Store, store_dir: Path
) -> None:
    store.set("docs", "text", b"not a counter")
    futures = store.abatches(
        [
            [Set("docs", "a", b"1"), Incr("counters", "n", 2)],
            [Set("nowhere", "x", b"1")],  # refused before the writer: no such document
            [Set("docs", "b", b"2"), Incr("docs", "text", 1)],  # refused by the writer
            [Delete("docs", "a"), Incr("counters", "n", 3)],
        ]
    )
    assert len(futures) == 4
    results = await asyncio.gather(*futures, return_exceptions=True)
    assert results[0] == [None, 2]
    assert isinstance(results[1], UnknownDocumentError)
    assert isinstance(results[2], WrongTypeError)
    assert results[3] == [None, 5]
    # The refused batch wrote nothing of itself, not even its valid op.
    assert store.get("docs", "b") is None
    assert store.get("docs", "a") is None  # batch 3 deleted what batch 0 set, in order
    store.close()
    with Store.open(store_dir) as again:  # what the futures said is what is on disk
        assert again.get_counter("counters", "n") == 5
        assert again.get("docs", "text") == b"not a counter"
        assert again.get("docs", "b") is None


async def test_no_batches_and_a_closed_store(store: Store) -> None:
    assert store.abatches([]) == []
    store.close()
    with pytest.raises(StoreClosedError):
        store.abatches([[Set("docs", "k", b"v")]])


def test_every_acknowledged_batch_survives_kill_9(tmp_path: Path) -> None:
    data = tmp_path / "data"
    proc = subprocess.Popen(
        [sys.executable, str(CHILD), str(data)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    acked: list[str] = []
    try:
        while len(acked) < 1500:
            line = proc.stdout.readline()
            assert line, "writer died before the kill"
            acked.append(line.split()[1])
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        proc.stdout.close()
    with Store.open(data) as store:
        for key in acked:
            assert store.get("d", key) == key.encode(), f"acknowledged {key} lost"
        last = store.get("d", "last")
        assert last is not None and int(last[1:]) >= max(int(k[1:]) for k in acked) - 15
