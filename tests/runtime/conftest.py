"""Fixtures: a real store in a temp dir, a trusted publisher, a runtime."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edgestate.runtime import Runtime, RuntimeConfig, TrustPolicy, generate_key, raw_public_key
from edgestate.runtime.policy import public_key_text
from edgestate.store import Store

REPO = Path(__file__).resolve().parents[2]
DOCS = ("app", "ro", "other", "bench", "counters", "kv", "sessions")


@pytest.fixture(scope="session")
def key() -> Ed25519PrivateKey:
    return generate_key()


@pytest.fixture(scope="session")
def guest_build_dir() -> Path:
    """Built example modules, cached across runs by source hash (git-ignored)."""
    return REPO / "build" / "guest-wasm"


def policy_dict(key: Ed25519PrivateKey, **limits: int) -> dict[str, object]:
    return {
        "version": 1,
        "publishers": [
            {
                "name": "tests",
                "public_key": public_key_text(raw_public_key(key)),
                "documents": {
                    "read": ["ro", "other"],
                    "write": ["app", "bench", "counters", "kv", "sessions", "missing"],
                },
                "limits": {
                    "fuel": 1_000_000_000,
                    "wall_time_ms": 2000,
                    "memory_pages": 256,
                    "max_output_bytes": 1 << 20,
                    **limits,
                },
            }
        ],
    }


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store.open(tmp_path / "data")
    for doc in DOCS:
        s.create_document(doc)
    yield s
    s.close()


@pytest.fixture
def policy(key: Ed25519PrivateKey) -> TrustPolicy:
    return TrustPolicy.from_dict(policy_dict(key))


@pytest.fixture
def runtime(store: Store, policy: TrustPolicy, tmp_path: Path) -> Iterator[Runtime]:
    rt = Runtime(store, policy, RuntimeConfig(cache_dir=tmp_path / "cache"))
    yield rt
    rt.close()
