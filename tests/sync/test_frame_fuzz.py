"""A bounded, seeded fuzz of sync frames against a real daemon (insecure, loopback).

Every frame type before and after hello, near-valid mutations, oversized frames
and deep msgpack nesting (edgestate.devkit.frame_fuzz). For each case the daemon
accepts it (valid) or closes that connection with a protocol close code; it logs
no unhandled exception, counts each error, and keeps serving a proper peer with
nothing lost. EDGESTATE_FUZZ_SEED and EDGESTATE_FUZZ_CASES override the run.
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgestate.devkit.frame_fuzz import POLICY_VIOLATION, FrameFuzzer, FuzzLimits
from edgestate.devkit.fuzz_client import Tally, run_cases
from edgestate.store import Set, Store
from edgestate.sync.config import Limits, SyncConfig
from edgestate.sync.daemon import SyncDaemon
from tests.sync.conftest import FAST_STORE, eventually

SEED = int(os.environ.get("EDGESTATE_FUZZ_SEED", "20261201"))
CASES = int(os.environ.get("EDGESTATE_FUZZ_CASES", "2500"))
# Bounds of the run: well under a minute on a loaded machine.
MAX_SECONDS = 45.0
# Cases between two checks that a proper peer still replicates.
CHECK_EVERY = 400
FUZZ = FuzzLimits()


class Errors(logging.Handler):
    """Collects log records at ERROR or above, or carrying a traceback."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.ERROR or record.exc_info:
            self.records.append(record)


@pytest.fixture
def errors() -> Iterator[Errors]:
    handler = Errors()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)


def _config(name: str, peers: tuple[str, ...] = ()) -> SyncConfig:
    return SyncConfig(
        port=0,
        insecure=True,
        node_id=name,
        static_peers=peers,
        mdns=False,
        anti_entropy_s=3600.0,
        backoff_initial_s=0.02,
        backoff_max_s=0.2,
        limits=Limits(
            max_frame_bytes=FUZZ.max_frame_bytes,
            max_diff_frame_bytes=FUZZ.max_diff_frame_bytes,
            max_documents_per_frame=FUZZ.max_documents_per_frame,
        ),
    )


async def test_sync_frame_fuzz(tmp_path: Path, errors: Errors) -> None:
    target_store = Store.open(tmp_path / "target", FAST_STORE)
    target = SyncDaemon(target_store, _config("target"))
    await target.start()
    peer_store = Store.open(tmp_path / "peer", FAST_STORE)
    peer = SyncDaemon(peer_store, _config("peer", (f"127.0.0.1:{target.port}",)))
    written: list[tuple[str, bytes]] = []

    async def still_replicates() -> None:
        key = f"k{len(written)}"
        value = random.Random(len(written)).randbytes(16)
        target_store.batch([Set("replicated", key, value)])
        written.append((key, value))
        await eventually(
            lambda: (
                peer_store.has_document("replicated") and peer_store.get("replicated", key) == value
            ),
            20.0,
        )
        for k, v in written:  # nothing written before is lost, on either side
            assert target_store.get("replicated", k) == v
            assert peer_store.get("replicated", k) == v

    try:
        await peer.start()
        assert target.port is not None
        target_store.create_document("replicated")
        await still_replicates()
        fuzzer = FrameFuzzer(random.Random(SEED), FUZZ)
        cases = fuzzer.cases()
        tally = Tally()
        done = 0
        deadline = time.monotonic() + MAX_SECONDS
        while done < CASES and time.monotonic() < deadline:
            batch = min(CHECK_EVERY, CASES - done)
            await run_cases(
                cases,
                "127.0.0.1",
                target.port,
                count=batch,
                seconds=deadline - time.monotonic(),
                tally=tally,
                stop_on_failure=True,
            )
            done += batch
            if tally.failures:
                break
            await still_replicates()
        assert not tally.failures, [
            (f.case.category, f.case.phase, f.accepted, f.close_code, f.case.data[:80])
            for f in tally.failures[:20]
        ]
        refused = tally.close_codes[POLICY_VIOLATION]
        assert sum(target.stats.protocol_errors.values()) == tally.rejected - refused
        assert target.stats.refused == refused
        assert {c for c in tally.close_codes} <= {1002, 1008, 1009}
        assert len(tally.categories) > 40, tally.categories
        assert not errors.records, [r.getMessage() for r in errors.records[:10]]
    finally:
        await peer.close()
        await target.close()
        peer_store.close()
        target_store.close()
