"""Throwaway material for the demo and tests: a publisher and signed example bundles.

Nothing here is for production use: keys are written unencrypted to a directory
the caller owns and deletes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

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
