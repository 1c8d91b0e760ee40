"""Deploy, rollback and the module listing on one real node, side by side.

    python scripts/bench_rollback.py [--n 30] [--kb 64] [--modules 10]

One node subprocess (127.0.0.1, mDNS off, in-process invocations). Every deploy
is a new version of one module of about KB kilobytes of wasm, so its history
fills to module_history (5) and then drops one version per deploy; every
rollback goes between the two newest versions (verify, load, one activation
write); the listing is ``GET /v1/admin/modules`` with MODULES modules of five
kept versions each. Deploys and rollbacks are interleaved so machine load hits
both alike. Prints the median and p99 of each in ms.
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import click
import wasmtime

from edgestate.client import NodeClient
from edgestate.devkit import Publisher, make_publisher, spawn_node


def _bundle(publisher: Publisher, name: str, version: str, kb: int) -> tuple[bytes, bytes, bytes]:
    filler = "\\00" * (kb * 1024)
    wasm = bytes(
        wasmtime.wat2wasm(
            f'(module (memory (export "memory") {kb // 64 + 2})'
            f' (data (i32.const 0) "{version}") (data (i32.const 64) "{filler}")'
            ' (func (export "handle") (result i32) i32.const 0))'
        )
    )
    manifest = json.dumps(
        {
            "name": name,
            "version": version,
            "documents": {"read": [], "write": []},
            "limits": {"fuel": 10_000, "memory_pages": kb // 64 + 2, "max_output_bytes": 64},
        }
    ).encode()
    return wasm, manifest, publisher.sign(wasm, manifest)


def _stats(label: str, samples: list[float]) -> str:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    median = statistics.median(samples)
    return f"{label:<28} n={len(samples):<4} median {median:8.2f} ms   p99 {p99:8.2f} ms"


@click.command()
@click.option("--n", default=30, show_default=True, help="Deploys and rollbacks each.")
@click.option("--kb", default=64, show_default=True, help="Wasm size of each version.")
@click.option("--modules", default=10, show_default=True, help="Modules in the listing.")
def main(n: int, kb: int, modules: int) -> None:
    """Run the benchmark (see the module docstring)."""
    work = Path(tempfile.mkdtemp(prefix="bench-rollback-"))
    proc: subprocess.Popen[bytes] | None = None
    try:
        publisher = make_publisher(work / "publisher")
        data = work / "node"
        data.mkdir()
        shutil.copy(publisher.policy_path, data / "trust-policy.json")
        args = ["--data", str(data), "--api-port", "0", "--sync-port", "0", "--no-mdns"]
        proc, info = spawn_node([*args, "--workers", "0"], work / "ready.json", work / "node.log")
        client = NodeClient(info["api"], (data / "admin.token").read_text().strip())
        for m in range(modules):
            for v in range(5):
                client.deploy(*_bundle(publisher, f"listed-{m}", f"1.{v}.0", kb))
        deploys: list[float] = []
        rollbacks: list[float] = []
        listing: list[float] = []
        for i in range(n):
            bundle = _bundle(publisher, "bench", f"2.{i}.0", kb)
            start = time.perf_counter()
            client.deploy(*bundle)
            deploys.append((time.perf_counter() - start) * 1000)
            if i >= 1:
                start = time.perf_counter()
                client.rollback("bench", f"2.{i - 1}.0")
                client.rollback("bench", f"2.{i}.0")
                rollbacks.append((time.perf_counter() - start) * 1000 / 2)
            start = time.perf_counter()
            client.modules()
            listing.append((time.perf_counter() - start) * 1000)
        kept = next(m for m in client.modules() if m["name"] == "bench")["history"]
        click.echo(f"{kb} KB modules; history of 'bench' after {n} deploys: {len(kept)} kept")
        click.echo(_stats("deploy (new version)", deploys))
        click.echo(_stats("rollback (kept version)", rollbacks))
        click.echo(_stats(f"GET modules ({modules + 1} x 5 kept)", listing))
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
