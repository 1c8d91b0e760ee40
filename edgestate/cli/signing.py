"""The checks ``edgestate sign`` makes before and while writing a signature.

A signature is a publisher's word that a module is fit to deploy, so nothing a
node would refuse gets one: the manifest must parse (strictly), the wasm must be
a binary that compiles and fits the manifest (``edgestate.runtime.interface``).
And a signature file is never silently replaced by one over other bytes: signing
``hits.zig`` by mistake must not destroy the real ``hits.sig``.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

from edgestate.errors import EdgestateError, ModuleCompileError, SignatureOverwriteError

if TYPE_CHECKING:
    from edgestate.guest.leanness import LeanWarning
    from edgestate.runtime import Manifest


def check_for_signing(path: Path, wasm: bytes, manifest: bytes) -> Manifest:
    """The parsed manifest, once ``wasm`` (read from ``path``) is known to load with it."""
    from edgestate.runtime import RuntimeConfig, parse_manifest
    from edgestate.runtime.engine import build_engine
    from edgestate.runtime.interface import check_module

    parsed = parse_manifest(manifest)
    try:
        check_module(build_engine(RuntimeConfig()), wasm, parsed)
    except ModuleCompileError as exc:
        raise ModuleCompileError(f"refusing to sign {path}: {exc}") from exc
    return parsed


def lean_report(wasm: bytes) -> list[LeanWarning]:
    """Print ``warning: ...`` on stderr for each way ``wasm`` is not lean; return them.

    Shared by ``sign`` and ``deploy``: the rules are ``edgestate.guest.leanness``.
    """
    import click

    from edgestate.guest.leanness import lean_warnings
    from edgestate.guest.wasminfo import inspect_wasm

    try:
        info = inspect_wasm(wasm)
    except ModuleCompileError:
        return []  # not wasm: the node's refusal (or sign's check) names that
    warnings = lean_warnings(info)
    for warning in warnings:
        click.echo(f"warning: {warning.message}", err=True)
    return warnings


def write_signature(
    target: Path, signature: bytes, wasm: bytes, manifest: bytes, *, force: bool
) -> None:
    """Write ``signature`` to ``target`` (atomically), unless that replaces other bytes' one."""
    if target.exists() and not force:
        _refuse_foreign(target, wasm, manifest)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.write_bytes(signature)
    tmp.replace(target)


def _refuse_foreign(target: Path, wasm: bytes, manifest: bytes) -> None:
    from edgestate.runtime.signing import parse_signature

    try:
        existing = parse_signature(target.read_bytes())
    except (EdgestateError, OSError) as exc:
        raise SignatureOverwriteError(
            f"{target} exists and is not a module signature ({exc}); refusing to replace "
            "it (pass --force, or --out another file)"
        ) from exc
    wasm_sha = hashlib.sha256(wasm).hexdigest()
    manifest_sha = hashlib.sha256(manifest).hexdigest()
    if existing.wasm_sha256 != wasm_sha:
        what = f"a different wasm (sha256 {existing.wasm_sha256[:16]}…, this one {wasm_sha[:16]}…)"
    elif existing.manifest_sha256 != manifest_sha:
        what = "this wasm with a different manifest"
    else:
        return  # the same bytes, signed again (another key, say): nothing is lost
    raise SignatureOverwriteError(
        f"{target} already signs {what}; refusing to replace it (pass --force, or --out "
        "another file)"
    )
