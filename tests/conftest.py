"""Fixtures shared by every test package: real stores in temporary directories."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgestate.store import Store, StoreConfig


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    """A fresh, not yet created, data directory."""
    return tmp_path / "data"


@pytest.fixture
def store(store_dir: Path) -> Iterator[Store]:
    """An open store with documents ``docs`` and ``counters``."""
    s = Store.open(store_dir, StoreConfig())
    s.create_document("docs")
    s.create_document("counters")
    yield s
    s.close()


JS_DIR = Path(__file__).resolve().parent / "js"


@pytest.fixture(scope="session")
def js_client() -> Path:
    """tests/js with node_modules installed (CI starts from a clean clone)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are needed to run the real Yjs client")
    if not (JS_DIR / "node_modules" / "y-websocket").exists():
        command = "ci" if (JS_DIR / "package-lock.json").exists() else "install"
        subprocess.run(
            ["npm", command, "--no-audit", "--no-fund"],
            cwd=JS_DIR,
            check=True,
            timeout=300,
            capture_output=True,
        )
    return JS_DIR / "client.mjs"
