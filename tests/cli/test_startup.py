"""Start-up stays light: registering commands does not import what they run on.

A structural check (which modules are loaded), not a timing one: a command
imports aiohttp, wasmtime, the runtime, the sync daemon, the node service,
cryptography, prometheus_client or tomli_w only inside the function that runs.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = (
    "aiohttp",
    "wasmtime",
    "cryptography",
    "prometheus_client",
    "tomli_w",
    "edgestate.sync",
    "edgestate.runtime",
    "edgestate.node.service",
    "edgestate.devkit",
)

_PROBE = """
import json, sys
from edgestate.cli.main import cli
try:
    cli(sys.argv[1:], prog_name="edgestate")
except SystemExit:
    pass
print(json.dumps(sorted(sys.modules)), file=sys.stderr)
"""


def loaded_after(*args: str) -> set[str]:
    """Modules loaded by a fresh interpreter after ``edgestate ARGS``."""
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, *args], capture_output=True, text=True, timeout=60
    )
    return set(json.loads(done.stderr.strip().splitlines()[-1]))


def heavy_in(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY))


@pytest.mark.parametrize(
    "args",
    [
        ["--version"],
        ["--help"],
        ["kv", "--help"],
        ["inspect", "--help"],
        ["node", "--help"],
        ["deploy", "--help"],
        ["invoke", "--help"],
        ["cluster", "--help"],
        ["demo", "--help"],
    ],
    ids=" ".join,
)
def test_no_heavy_module_is_loaded_to_register_commands(args: list[str]) -> None:
    assert heavy_in(loaded_after(*args)) == []


def test_importing_the_cli_loads_neither_the_client_nor_the_store() -> None:
    # Both are needed only once a command talks to a node or opens a directory.
    modules = loaded_after("--version")
    assert "edgestate.client" not in modules
    assert not any(m == "edgestate.store" or m.startswith("edgestate.store.") for m in modules)
