"""Fixtures for the SDK tests: toolchains (installed by scripts/bootstrap when
missing), a throwaway publisher, and one node subprocess every SDK deploys to."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from edgestate.devkit import Publisher, make_publisher
from edgestate.errors import ToolchainError
from edgestate.guest.toolchains import Asc, Rustc, find_asc, find_rustc
from tests.node.conftest import NodeProcess, start_node

REPO = Path(__file__).resolve().parents[2]
T = TypeVar("T")


def toolchain(find: Callable[[], T]) -> T:
    """``find()``; when it fails, install the toolchains with scripts/bootstrap and retry.

    Skips (with the reason) only outside CI when they cannot be installed here.
    """
    try:
        return find()
    except ToolchainError:
        subprocess.run(
            [str(REPO / "scripts" / "bootstrap"), "--toolchains"],
            check=False,
            timeout=900,
            capture_output=True,
        )
    try:
        return find()
    except ToolchainError as exc:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip(f"toolchain not installable here: {exc}")


@pytest.fixture(scope="session")
def rustc() -> Rustc:
    return toolchain(find_rustc)


@pytest.fixture(scope="session")
def asc() -> Asc:
    return toolchain(find_asc)


@pytest.fixture(scope="session")
def build_dir() -> Path:
    """Built modules, cached across runs by source hash (git-ignored)."""
    return REPO / "build" / "guest-wasm"


@pytest.fixture(scope="session")
def publisher(tmp_path_factory: pytest.TempPathFactory) -> Publisher:
    return make_publisher(tmp_path_factory.mktemp("sdk-publisher"))


@pytest.fixture(scope="session")
def sdk_node(
    tmp_path_factory: pytest.TempPathFactory, publisher: Publisher
) -> Iterator[NodeProcess]:
    """One node for every SDK's examples; each language deploys under its own names."""
    data = tmp_path_factory.mktemp("sdk-node") / "data"
    data.mkdir()
    shutil.copy(publisher.policy_path, data / "trust-policy.json")
    node = start_node(data, "--no-mdns")  # deploy creates the documents a module writes
    yield node
    assert node.stop() == 0, node.log()


def assert_traps_after_logging(
    wasm: bytes,
    name: str,
    publisher: Publisher,
    data: Path,
    caplog: pytest.LogCaptureFixture,
    logged: str,
    input: bytes = b"",
) -> None:
    """Sign ``wasm`` as module ``name``, invoke it once: it must trap, and the host
    log must hold ``logged`` (what the SDK's panic or abort handler wrote first)."""
    import json

    from edgestate.errors import GuestTrapError
    from edgestate.runtime import Runtime, RuntimeConfig, TrustPolicy, load_private_key, sign_module
    from edgestate.store import Store

    manifest = json.dumps(
        {
            "name": name,
            "version": "1.0.0",
            "documents": {"read": [], "write": []},
            "limits": {"fuel": 100000, "memory_pages": 4, "max_output_bytes": 64},
        }
    ).encode()
    signature = sign_module(wasm, manifest, load_private_key(publisher.key_path))
    with (
        Store.open(data) as store,
        Runtime(store, TrustPolicy.load(publisher.policy_path), RuntimeConfig()) as runtime,
        caplog.at_level("DEBUG"),
    ):
        runtime.load(wasm, manifest, signature)
        with pytest.raises(GuestTrapError):
            runtime.invoke(name, input)
    assert logged in caplog.text
