"""The AssemblyScript SDK (edgestate/guest/assemblyscript, an npm package): it
declares exactly the ABI, its examples build small with the project-local asc,
they do what the Zig examples do, and an abort is logged before the trap."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from edgestate.devkit import Publisher
from edgestate.guest import EXAMPLES, EXAMPLES_DIR
from edgestate.guest.toolchains import AS_SDK_DIR, Asc, build_as
from edgestate.guest.wasminfo import inspect_wasm
from edgestate.host.abi import ErrorCode
from tests.guest.conftest import assert_traps_after_logging
from tests.guest.crosslang import assert_does_what_zig_does
from tests.node.conftest import NodeProcess

pytestmark = pytest.mark.timeout(300)

ABI = json.loads((Path(__file__).resolve().parents[2] / "schemas" / "host-abi.json").read_text())
SDK = (AS_SDK_DIR / "assembly" / "index.ts").read_text()


def test_assemblyscript_sdk_declares_the_abi() -> None:
    found = re.findall(
        r'@external\("edgestate", "(\w+)"\)\s+export declare function (\w+)\(([^)]*)\): (\w+);',
        SDK,
    )
    declared = {}
    for import_name, name, params, result in found:
        assert import_name == name
        pairs = [p.split(":") for p in params.split(",") if p.strip()]
        declared[name] = (
            [{"name": n.strip(), "type": "i64" if t.strip() == "i64" else "i32"} for n, t in pairs],
            [] if result == "void" else [result],
        )
    assert declared == {f["name"]: (f["params"], f["results"]) for f in ABI["functions"]}
    codes = dict(re.findall(r"^\s+([A-Z_]+) = (-\d+),$", SDK, re.M))
    assert {k: int(v) for k, v in codes.items()} == {c.name: c.value for c in ErrorCode}
    package = json.loads((AS_SDK_DIR / "package.json").read_text())
    assert package["name"] == "edgestate-sdk" and "dependencies" not in package


@pytest.mark.parametrize("example", EXAMPLES)
def test_assemblyscript_example_builds_small(example: str, asc: Asc, build_dir: Path) -> None:
    wasm = build_as(EXAMPLES_DIR / f"{example}.ts", build_dir, asc=asc)
    info = inspect_wasm(wasm.read_bytes())
    manifest = json.loads((EXAMPLES_DIR / f"{example}.manifest.json").read_text())
    assert info.size < 16384, info
    assert info.custom_sections == [], info  # no debug info, no source map URL
    assert info.initial_pages is not None
    assert info.initial_pages < manifest["limits"]["memory_pages"], info
    assert info.exports_entry("handle") and info.exports_memory, info
    assert {m for m, _ in info.imports} == {"edgestate"}, info  # no env.abort
    assert build_as(EXAMPLES_DIR / f"{example}.ts", build_dir, asc=asc) == wasm  # cached


@pytest.mark.parametrize("example", EXAMPLES)
def test_assemblyscript_example_does_what_the_zig_one_does(
    example: str,
    asc: Asc,
    build_dir: Path,
    publisher: Publisher,
    sdk_node: NodeProcess,
    tmp_path: Path,
) -> None:
    wasm = build_as(EXAMPLES_DIR / f"{example}.ts", build_dir, asc=asc)
    assert_does_what_zig_does(wasm, "as", example, build_dir, publisher, sdk_node.client, tmp_path)


ABORTS = """import { input } from "edgestate-sdk";
export function handle(): i32 {
  const data = input();
  if (data.length < 100) throw new Error("input too short for this module");
  return 0;
}
"""


def test_assemblyscript_abort_is_logged_before_the_trap(
    asc: Asc,
    build_dir: Path,
    tmp_path: Path,
    publisher: Publisher,
    caplog: pytest.LogCaptureFixture,
) -> None:
    source = tmp_path / "aborts.ts"
    source.write_text(ABORTS)
    wasm = build_as(source, build_dir, asc=asc).read_bytes()
    assert_traps_after_logging(
        wasm,
        "aborts",
        publisher,
        tmp_path / "data",
        caplog,
        "abort: input too short for this module at aborts.ts:4",
        input=b"x",
    )
