"""Fixtures shared by every test package: real stores in temporary directories."""

from __future__ import annotations

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
