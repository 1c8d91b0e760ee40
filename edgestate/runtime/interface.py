"""What a wasm module must look like to run here, checked before any instance exists.

Shared by loading (every node, :class:`~edgestate.runtime.sandbox.Sandbox`) and
signing (``edgestate sign``), so a publisher learns at sign time what a node
would refuse at deploy: a file that is not a wasm binary, imports other than the
host ABI's functions with their exact types, an entry export of the wrong type,
no exported memory, or an initial memory larger than the manifest allows.
"""

from __future__ import annotations

import wasmtime

from edgestate.errors import ModuleCompileError
from edgestate.host.abi import FUNCTIONS, IMPORT_MODULE
from edgestate.runtime.cache import compile_module
from edgestate.runtime.manifest import Manifest


def check_module(engine: wasmtime.Engine, wasm: bytes, manifest: Manifest) -> wasmtime.Module:
    """Compile ``wasm`` and check it against ``manifest`` (:class:`ModuleCompileError`)."""
    module = compile_module(engine, wasm)
    check_interface(module, manifest, manifest.limits.memory_pages)
    return module


def check_interface(module: wasmtime.Module, manifest: Manifest, memory_pages: int) -> None:
    """Refuse a compiled module that cannot run with ``manifest`` and ``memory_pages``."""
    where = f"module {manifest.name!r}"
    known = {f.name: f for f in FUNCTIONS}
    for imp in module.imports:
        function = known.get(imp.name or "") if imp.module == IMPORT_MODULE else None
        if function is None:
            raise ModuleCompileError(
                f"{where} imports {imp.module}.{imp.name}, which the host does not "
                "provide (see schemas/host-abi.json)"
            )
        ty = imp.type
        want = ([t for _, t in function.params], list(function.results))
        got = (
            ([str(p) for p in ty.params], [str(r) for r in ty.results])
            if isinstance(ty, wasmtime.FuncType)
            else None
        )
        if got != want:
            raise ModuleCompileError(
                f"{where} imports {IMPORT_MODULE}.{imp.name} with the wrong type; "
                f"the ABI has params {want[0]} and results {want[1]}"
            )
    exports = {e.name: e.type for e in module.exports}
    entry = exports.get(manifest.entry)
    if not isinstance(entry, wasmtime.FuncType) or (
        [str(p) for p in entry.params],
        [str(r) for r in entry.results],
    ) != ([], ["i32"]):
        raise ModuleCompileError(
            f"{where} must export its entry {manifest.entry!r} as a function "
            "taking no arguments and returning an i32 status"
        )
    memory = exports.get("memory")
    if not isinstance(memory, wasmtime.MemoryType):
        raise ModuleCompileError(f"{where} must export its linear memory as 'memory'")
    if memory.limits.min > memory_pages:
        raise ModuleCompileError(
            f"{where} starts with {memory.limits.min} memory pages but its manifest "
            f"allows {memory_pages}"
        )
