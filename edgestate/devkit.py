"""Throwaway material for the demo and tests: a publisher, signed example bundles,
a cluster CA with node certificates, and node config files.

Nothing here is for production use: keys are written unencrypted to a directory
the caller owns and deletes.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgestate.guest import EXAMPLES, EXAMPLES_DIR, example_wasm
from edgestate.runtime import generate_key, raw_public_key, save_private_key, sign_module
from edgestate.runtime.policy import public_key_text


@dataclass(frozen=True, slots=True)
class Bundle:
    """A signed module: what ``POST /v1/admin/modules`` takes."""

    name: str
    wasm: bytes
    manifest: bytes
    signature: bytes


@dataclass(frozen=True, slots=True)
class Publisher:
    """A signing key and the trust policy that trusts it."""

    key_path: Path
    policy_path: Path
    public_key: str

    def sign(self, wasm: bytes, manifest: bytes) -> bytes:
        """Signature bytes for a bundle."""
        from edgestate.runtime import load_private_key

        return sign_module(wasm, manifest, load_private_key(self.key_path))


def make_publisher(
    directory: Path,
    *,
    name: str = "demo",
    write: tuple[str, ...] = ("*",),
    fuel: int = 10_000_000,
    wall_time_ms: int = 1000,
    memory_pages: int = 64,
    max_output_bytes: int = 1 << 16,
) -> Publisher:
    """A new publisher key in ``directory`` and a policy granting it ``write`` documents."""
    directory.mkdir(parents=True, exist_ok=True)
    key = generate_key()
    key_path = directory / f"{name}.key"
    save_private_key(key, key_path)
    public = public_key_text(raw_public_key(key))
    policy = {
        "version": 1,
        "publishers": [
            {
                "name": name,
                "public_key": public,
                "documents": {"read": ["*"], "write": list(write)},
                "limits": {
                    "fuel": fuel,
                    "wall_time_ms": wall_time_ms,
                    "memory_pages": memory_pages,
                    "max_output_bytes": max_output_bytes,
                },
            }
        ],
    }
    policy_path = directory / f"{name}-trust-policy.json"
    policy_path.write_text(json.dumps(policy, indent=2))
    return Publisher(key_path, policy_path, public)


def example_bundle(name: str, publisher: Publisher, build_dir: Path) -> Bundle:
    """Build (cached) and sign one of the example modules."""
    if name not in EXAMPLES:
        raise ValueError(f"unknown example {name!r}; one of {EXAMPLES}")
    wasm = example_wasm(name, build_dir)
    manifest = (EXAMPLES_DIR / f"{name}.manifest.json").read_bytes()
    return Bundle(json.loads(manifest)["name"], wasm, manifest, publisher.sign(wasm, manifest))


class NodeStartError(RuntimeError):
    """A node process exited or did not become ready; carries its log."""


def spawn_node(
    args: list[str],
    ready_file: Path,
    log_path: Path,
    *,
    timeout: float = 30.0,
    env: dict[str, str] | None = None,
) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    """Start ``edgestate node ARGS`` as a process and wait for its ready file.

    Returns the process and what the node wrote to the ready file (``api``,
    ``sync_port``, ``node_id``, ``pid``). Output goes to ``log_path``.
    """
    ready_file.unlink(missing_ok=True)
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "edgestate.cli.main",
                "node",
                *args,
                "--ready-file",
                str(ready_file),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    deadline = time.monotonic() + timeout
    while not ready_file.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            raise NodeStartError(
                f"node exited with {proc.returncode} before it was ready:\n"
                + log_path.read_text(errors="replace")
            )
        time.sleep(0.02)
    return proc, dict(json.loads(ready_file.read_text()))
