"""The layering check (scripts/check_layers.py) holds for the tree, and fails on
each kind of violation it exists to catch."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("check_layers", ROOT / "scripts/check_layers.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["check_layers"] = module
    spec.loader.exec_module(module)
    return module


layers = _load()


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    package = tmp_path / "edgestate"
    base = {
        "__init__.py": '__version__ = "0"\n',
        "errors.py": "",
        "store/__init__.py": "from edgestate.store.gc import Ranges\n",
        "store/gc.py": "from edgestate.errors import *\nRanges = 1\n_hidden = 2\n",
        "sync/__init__.py": "",
        "node/__init__.py": "",
    }
    for rel, text in {**base, **files}.items():
        path = package / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return package


def test_the_tree_keeps_its_layers() -> None:
    assert layers.check(ROOT / "edgestate") == []


def test_a_clean_tree_passes(tmp_path: Path) -> None:
    package = _tree(
        tmp_path,
        {"sync/daemon.py": "from edgestate.store import Ranges\nfrom edgestate import errors\n"},
    )
    assert layers.check(package) == []


@pytest.mark.parametrize(
    ("files", "finding"),
    [
        # A lower layer importing a higher one, even lazily inside a function.
        (
            {"store/env.py": "def f():\n    from edgestate.sync import daemon\n"},
            "layer 'store' imports edgestate.sync",
        ),
        ({"sync/x.py": "import edgestate.node\n"}, "layer 'sync' imports edgestate.node"),
        ({"store/y.py": "from edgestate import node\n"}, "layer 'store' imports edgestate"),
        # Reaching into the store's private modules.
        (
            {"sync/daemon.py": "from edgestate.store.gc import Ranges\n"},
            "edgestate.store.gc is private to edgestate.store",
        ),
        # Reaching into a section module of the error tree.
        (
            {"sync/daemon.py": "from edgestate.errors.store import StoreError\n"},
            "edgestate.errors.store is private to edgestate.errors",
        ),
        # A private name of another package.
        (
            {"node/a.py": "from edgestate.store import _hidden\n"},
            "imports private _hidden",
        ),
        # A cycle, TYPE_CHECKING imports included.
        (
            {
                "node/a.py": "from edgestate.node.b import x\ny = 1\n",
                "node/b.py": (
                    "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                    "    from edgestate.node.a import y\nx = 1\n"
                ),
            },
            "import cycle: edgestate.node.a -> edgestate.node.b -> edgestate.node.a",
        ),
        # A package nobody placed.
        ({"extra/__init__.py": ""}, "package 'extra' has no place in LAYERS"),
    ],
)
def test_each_violation_is_named(tmp_path: Path, files: dict[str, str], finding: str) -> None:
    found = layers.check(_tree(tmp_path, files))
    assert any(finding in line for line in found), found
