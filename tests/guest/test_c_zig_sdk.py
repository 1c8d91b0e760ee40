"""The C header and the Zig file: every ABI function with its exact signature,
the entry helpers, lean builds (64 KiB stack: 2 initial pages, stripped), and
C examples that do what the Zig ones do, locally and on a node."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from edgestate.devkit import Publisher
from edgestate.guest import C_HEADER, EXAMPLES, EXAMPLES_DIR, ZIG_SDK, build_example
from edgestate.guest.toolchains import build_c
from edgestate.guest.wasminfo import inspect_wasm
from edgestate.host.abi import ErrorCode
from tests.guest.crosslang import assert_does_what_zig_does
from tests.node.conftest import NodeProcess

pytestmark = pytest.mark.timeout(300)

ABI = json.loads((Path(__file__).resolve().parents[2] / "schemas" / "host-abi.json").read_text())
SIGNATURES = {f["name"]: ([p["type"] for p in f["params"]], f["results"]) for f in ABI["functions"]}


def _c_type(text: str) -> str:
    text = text.strip()
    if "*" in text or "int32_t" in text:
        return "i32"
    if "int64_t" in text:
        return "i64"
    raise AssertionError(f"unexpected C type {text!r}")


def test_c_header_declares_every_signature() -> None:
    text = C_HEADER.read_text()
    found = re.findall(r'ES_IMPORT\("(\w+)"\)\s+(\w+)\s+es_(\w+)\(([^)]*)\);', text)
    declared = {}
    for name, result, c_name, params in found:
        assert c_name == name
        types = [] if params.strip() == "void" else [_c_type(p) for p in params.split(",")]
        declared[name] = (types, [] if result == "void" else [_c_type(result)])
    assert declared == SIGNATURES


def test_zig_sdk_declares_every_signature_and_status() -> None:
    text = ZIG_SDK.read_text()
    found = re.findall(r'pub extern "edgestate" fn (\w+)\(([^)]*)\) (\w+);', text)
    declared = {}
    for name, params, result in found:
        types = [
            "i64" if p.split(":")[1].strip() == "i64" else "i32"
            for p in params.split(",")
            if p.strip()
        ]
        declared[name] = (types, [] if result == "void" else [result])
    assert declared == SIGNATURES
    # es.status() gives the statuses the Rust SDK's Error::status() gives.
    statuses = re.findall(r"error\.(\w+) => (\d+),", text)
    camel = [c.name.title().replace("_", "") for c in ErrorCode]
    assert statuses[: len(camel)] == [
        (n, str(100 - c.value)) for c, n in zip(ErrorCode, camel, strict=True)
    ]


@pytest.mark.parametrize("lang", ["c", "zig"])
@pytest.mark.parametrize("example", EXAMPLES)
def test_c_and_zig_examples_build_lean(example: str, lang: str, build_dir: Path) -> None:
    if lang == "c":
        wasm = build_c(EXAMPLES_DIR / f"{example}.c", build_dir)
    else:
        wasm = build_example(example, build_dir)
    info = inspect_wasm(wasm.read_bytes())
    assert info.size < 4096, info
    assert info.custom_sections == [], info
    assert info.initial_pages == 2, info  # the 64 KiB stack, not the default 1 MiB (17)
    assert info.exports_entry("handle") and info.exports_memory, info


def test_c_entry_is_exported_by_the_macro_alone(build_dir: Path, tmp_path: Path) -> None:
    source = tmp_path / "named.c"
    source.write_text('#include "edgestate.h"\nES_EXPORT("run") int32_t run(void) { return 0; }\n')
    info = inspect_wasm(build_c(source, build_dir).read_bytes())
    assert info.exports_entry("run")  # no -Wl,--export=run among the flags


@pytest.mark.parametrize("example", EXAMPLES)
def test_c_example_does_what_the_zig_one_does(
    example: str,
    build_dir: Path,
    publisher: Publisher,
    sdk_node: NodeProcess,
    tmp_path: Path,
) -> None:
    c = build_c(EXAMPLES_DIR / f"{example}.c", build_dir)
    assert_does_what_zig_does(c, "c", example, build_dir, publisher, sdk_node.client, tmp_path)
