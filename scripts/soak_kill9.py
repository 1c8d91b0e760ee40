#!/usr/bin/env python3
"""Durability campaign: write to a real node, kill -9 it at a random moment, restart,
and check that every acknowledged write is there. Repeat.

    .venv/bin/python scripts/soak_kill9.py [--trials 10] [--clients 8] [--seed 1]

One data directory for the whole campaign (each trial restarts the node on what
the last one left), loopback only, bounded in trials and time. Prints per trial
the writes acknowledged before the kill and any lost (there must be none), then
the totals that README's "What we promise" quotes.
"""

from __future__ import annotations

import random
import signal
import tempfile
import threading
import time
from pathlib import Path

import click

from edgestate.client import NodeClient
from edgestate.devkit import spawn_node
from edgestate.errors import EdgestateError


def _writer(client: NodeClient, worker: int, acked: list[str], stop: threading.Event) -> None:
    n = 0
    while not stop.is_set():
        key = f"w{worker}-{time.monotonic_ns()}-{n}"
        try:
            client.put("soak", key, key.encode(), create=True)
        except (EdgestateError, OSError):
            return  # the node is gone: this write was never acknowledged
        acked.append(key)
        n += 1


def _all_keys(client: NodeClient) -> set[str]:
    keys: set[str] = set()
    cursor = None
    while True:
        page = client.scan("soak", "", cursor, 10_000)
        keys |= {item["key"] for item in page["items"]}
        cursor = page["cursor"]
        if cursor is None:
            return keys


@click.command()
@click.option("--trials", default=10, show_default=True)
@click.option("--clients", default=8, show_default=True)
@click.option("--seed", default=1, show_default=True)
@click.option("--max-run-s", default=3.0, show_default=True, help="Longest run before a kill.")
def main(trials: int, clients: int, seed: int, max_run_s: float) -> None:
    """Run the campaign and print what it found."""
    rng = random.Random(seed)
    total_acked = total_lost = 0
    with tempfile.TemporaryDirectory(prefix="soak-kill9-") as tmp:
        data = Path(tmp) / "data"
        data.mkdir()
        args = ["--data", str(data), "--api-port", "0", "--sync-port", "0", "--no-mdns"]
        every: list[str] = []
        for trial in range(1, trials + 1):
            proc, info = spawn_node(args, data / "ready.json", data / "node.log")
            token = (data / "admin.token").read_text().strip()
            client = NodeClient(info["api"], token, timeout=10)
            held = _all_keys(client) if every else set()
            missing_before = [k for k in every if k not in held]
            acked: list[str] = []
            stop = threading.Event()
            threads = [
                threading.Thread(target=_writer, args=(client, w, acked, stop))
                for w in range(clients)
            ]
            for t in threads:
                t.start()
            time.sleep(rng.uniform(0.2, max_run_s))
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
            stop.set()
            for t in threads:
                t.join(timeout=30)
            every.extend(acked)
            total_acked += len(acked)
            total_lost += len(missing_before)
            print(
                f"trial {trial:>3}: {len(acked):>6} writes acknowledged, then kill -9; "
                f"lost from earlier trials: {len(missing_before)}",
                flush=True,
            )
        proc, info = spawn_node(args, data / "ready.json", data / "node.log")
        client = NodeClient(info["api"], (data / "admin.token").read_text().strip())
        held = _all_keys(client)
        lost = [k for k in every if k not in held]
        total_lost += len(lost)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    print(
        f"{trials} kill -9 trials, {clients} clients: {total_acked:,} acknowledged writes, "
        f"{total_lost} lost"
    )
    if total_lost:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
