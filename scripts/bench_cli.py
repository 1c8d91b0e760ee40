#!/usr/bin/env python3
"""CLI start-up: wall time of short commands, the way a shell loop runs them.

    .venv/bin/python scripts/bench_cli.py [--runs 21] [--tree before=/path/to/old/checkout]

Runs each command as a fresh process, interleaved (one of each per round, so a
noisy moment hits them all alike), beside a bare ``python -c pass`` for the
interpreter's own floor, and prints the median and p99 of each. Each ``--tree``
runs the same commands from another checkout (first on PYTHONPATH), side by side
in the same run: how a change moved start-up, on the same machine at the same time.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click


def _time(argv: list[str], env: dict[str, str], cwd: str) -> float:
    start = time.perf_counter()
    subprocess.run(
        argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=cwd
    )
    return time.perf_counter() - start


@click.command()
@click.option("--runs", default=21, show_default=True, help="Runs of each command.")
@click.option("--tree", "trees", multiple=True, help="NAME=PATH: also run from that checkout.")
def main(runs: int, trees: tuple[str, ...]) -> None:
    """Print median and p99 start-up of each command."""
    py = sys.executable
    cli = [py, "-m", "edgestate.cli.main"]
    with tempfile.TemporaryDirectory(prefix="bench-cli-") as tmp:
        data = Path(tmp) / "data"
        subprocess.run(
            [*cli, "kv", "--data", str(data), "put", "--create", "d", "k", "v"],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        commands = {
            "--version": [*cli, "--version"],
            "kv get (local dir)": [*cli, "kv", "--data", str(data), "get", "d", "k"],
            "kv put (local dir)": [*cli, "kv", "--data", str(data), "put", "d", "k", "w"],
            "inspect stats": [*cli, "inspect", "--data", str(data), "stats"],
        }
        # Each tree first on PYTHONPATH, run from a neutral directory (``-m`` puts
        # the working directory first on sys.path).
        here = str(Path(__file__).resolve().parent.parent)
        envs = {"this tree": {**os.environ, "PYTHONPATH": here}}
        for tree in trees:
            label, _, path = tree.partition("=")
            envs[label] = {**os.environ, "PYTHONPATH": str(Path(path).resolve())}
        runs_of = {("python -c pass (floor)", "-"): ([py, "-c", "pass"], dict(os.environ))}
        for label, env in envs.items():
            for name, argv in commands.items():
                runs_of[(f"edgestate {name}", label)] = (argv, env)
        times: dict[tuple[str, str], list[float]] = {key: [] for key in runs_of}
        for _ in range(runs):
            for key, (argv, env) in runs_of.items():
                times[key].append(_time(argv, env, tmp))
    print(
        f"{'command':<30} {'tree':<10} {'median ms':>10} {'p99 ms':>8}   ({runs} runs, interleaved)"
    )
    for (name, label), samples in sorted(times.items()):
        samples.sort()
        p99 = samples[min(len(samples) - 1, round(0.99 * (len(samples) - 1)))]
        print(
            f"{name:<30} {label:<10} {statistics.median(samples) * 1000:>10.1f} {p99 * 1000:>8.1f}"
        )


if __name__ == "__main__":
    main()
