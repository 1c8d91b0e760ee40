"""Import-level invariants of the node package: what each module may pull in."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def _modules_after_import(module: str) -> set[str]:
    # A fresh interpreter: this one has imported everything already.
    code = f"import json, sys; import {module}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return set(json.loads(out.stdout))


def test_node_config_is_light_to_import() -> None:
    # The CLI imports it for every command; the layers' configs load on first use.
    loaded = _modules_after_import("edgestate.node.config")
    heavy = {"aiohttp", "wasmtime", "pycrdt", "edgestate.sync.daemon", "edgestate.store"}
    assert not heavy & loaded, sorted(heavy & loaded)


@pytest.mark.parametrize(
    "module",
    [
        "edgestate.node.api",
        "edgestate.node.api.invoke",
        "edgestate.node.api.docs",
        "edgestate.node.api.cluster",
    ],
)
def test_api_routes_do_not_import_the_node(module: str) -> None:
    # Routes are written against edgestate.node.api.protocol, not against Node.
    loaded = _modules_after_import(module)
    assert "edgestate.node.service" not in loaded
    assert "edgestate.sync.daemon" not in loaded and "edgestate.runtime" not in loaded
