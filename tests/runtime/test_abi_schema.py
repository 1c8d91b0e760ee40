"""The host ABI the runtime defines is exactly the one schemas/host-abi.json describes,
and the guest SDKs declare the same functions and codes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import wasmtime
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edgestate.errors import ModuleCompileError
from edgestate.guest import C_HEADER, ZIG_SDK
from edgestate.host.abi import FUNCTIONS, IMPORT_MODULE, ErrorCode
from edgestate.runtime import Runtime

from .helpers import abi_script, deploy, manifest

ABI = json.loads((Path(__file__).resolve().parents[2] / "schemas" / "host-abi.json").read_text())


def test_import_module_and_memory_export_match() -> None:
    assert ABI["import_module"] == IMPORT_MODULE
    assert ABI["memory_export"] == "memory"


def test_functions_match_schema_exactly() -> None:
    defined = [
        {
            "name": f.name,
            "params": [{"name": n, "type": t} for n, t in f.params],
            "results": list(f.results),
        }
        for f in FUNCTIONS
    ]
    described = [
        {"name": f["name"], "params": f["params"], "results": f["results"]}
        for f in ABI["functions"]
    ]
    assert defined == described


def test_error_codes_match_schema_exactly() -> None:
    assert {c["name"]: c["value"] for c in ABI["error_codes"]} == {
        c.name: c.value for c in ErrorCode
    }
    for function in ABI["functions"]:
        assert set(function["errors"]) <= {c.name for c in ErrorCode}


def test_linker_defines_every_abi_function(runtime: Runtime, key: Ed25519PrivateKey) -> None:
    # A module importing the whole ABI links; its imports are the schema's functions.
    deploy(runtime, key, abi_script([]), manifest("all"))
    module = wasmtime.Module(runtime.engine, abi_script([]))
    assert sorted((i.module, i.name) for i in module.imports) == sorted(
        (IMPORT_MODULE, f["name"]) for f in ABI["functions"]
    )


def test_linker_defines_nothing_else(runtime: Runtime, key: Ed25519PrivateKey) -> None:
    extra = (
        '(module (import "edgestate" "kv_list" (func (result i32)))'
        ' (memory (export "memory") 1) (func (export "handle") (result i32) i32.const 0))'
    )
    with pytest.raises(ModuleCompileError):
        deploy(runtime, key, wasmtime.wat2wasm(extra), manifest("extra"))


def test_c_header_declares_the_abi() -> None:
    text = C_HEADER.read_text()
    assert sorted(re.findall(r'ES_IMPORT\("(\w+)"\)', text)) == sorted(f.name for f in FUNCTIONS)
    codes = {m[0]: int(m[1]) for m in re.findall(r"#define ES_ERR_(\w+)\s+\((-\d+)\)", text)}
    assert codes == {c.name: c.value for c in ErrorCode}


def test_zig_sdk_declares_the_abi() -> None:
    text = ZIG_SDK.read_text()
    names = re.findall(r'pub extern "edgestate" fn (\w+)', text)
    assert sorted(names) == sorted(f.name for f in FUNCTIONS)
    mapped = re.findall(r"(-\d+) => error\.(\w+)", text)
    assert [int(v) for v, _ in mapped] == [c.value for c in ErrorCode]
