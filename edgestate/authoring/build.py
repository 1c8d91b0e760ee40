"""``edgestate build``: compile a project with its language's toolchain and lean
settings, then check the result against the manifest.

The checks are the ones a node would otherwise make at deploy time, or that
cost every request: an initial memory over ``limits.memory_pages`` (refused at
load), a missing entry export (refused at load), imports outside ``edgestate``
(refused at link), and custom sections (debug info, names) that only make the
module slower to ship.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgestate.authoring.project import Project
from edgestate.guest import ZIG_FLAGS, build_zig
from edgestate.guest.toolchains import (
    AS_FLAGS,
    C_FLAGS,
    RUST_FLAGS,
    RUST_LINK_FLAGS,
    build_as,
    build_c,
    build_rust,
    find_asc,
    find_rustc,
    find_zig,
)
from edgestate.guest.wasminfo import inspect_wasm
from edgestate.runtime import parse_manifest


@dataclass
class BuildReport:
    """What was built and how it measures up to the manifest."""

    wasm: str
    lang: str
    toolchain: str
    flags: list[str]
    size: int
    code_bytes: int
    custom_sections: list[tuple[str, int]]
    initial_pages: int | None
    memory_pages: int | None  # the manifest's limit (None: the publisher's ceiling)
    entry: str
    problems: list[str] = field(default_factory=list)  # the node would refuse it
    warnings: list[str] = field(default_factory=list)  # it would run, but costs more

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` form."""
        return asdict(self)


def _compile(project: Project, cache: Path) -> tuple[Path, str, list[str]]:
    if project.lang == "zig":
        return build_zig(project.source, cache), f"ziglang {find_zig()}", list(ZIG_FLAGS)
    if project.lang == "c":
        return build_c(project.source, cache), f"ziglang {find_zig()} cc", list(C_FLAGS)
    if project.lang == "rust":
        rustc = find_rustc()
        wasm = build_rust(project.source, cache, rustc=rustc)
        return wasm, f"{rustc.version} ({rustc.path})", [*RUST_FLAGS, *RUST_LINK_FLAGS]
    asc = find_asc(project.directory)
    return (
        build_as(project.source, cache, asc=asc),
        f"asc {asc.version} ({asc.path})",
        list(AS_FLAGS),
    )


def build_project(project: Project, cache: Path | None = None) -> BuildReport:
    """Build ``project`` to ``project.wasm`` and report on it (cached by source hash)."""
    manifest = parse_manifest(project.manifest.read_bytes())
    raw_limits = json.loads(project.manifest.read_text()).get("limits", {})
    with tempfile.TemporaryDirectory(prefix="edgestate-build-") as tmp:
        built, toolchain, flags = _compile(project, cache or Path(tmp))
        shutil.copy(built, project.wasm)
    info = inspect_wasm(project.wasm.read_bytes())
    pages = raw_limits.get("memory_pages")
    report = BuildReport(
        wasm=str(project.wasm),
        lang=project.lang,
        toolchain=toolchain,
        flags=flags,
        size=info.size,
        code_bytes=info.code_bytes,
        custom_sections=info.custom_sections,
        initial_pages=info.initial_pages,
        memory_pages=pages,
        entry=manifest.entry,
    )
    if not info.exports_entry(manifest.entry):
        report.problems.append(
            f"the manifest's entry {manifest.entry!r} is not an exported function"
        )
    if not info.exports_memory:
        report.problems.append("no exported memory named 'memory'")
    if pages is not None and info.initial_pages is not None and info.initial_pages > pages:
        report.problems.append(
            f"starts with {info.initial_pages} memory pages, over the manifest's "
            f"limits.memory_pages = {pages}: the node refuses it (lower the stack size)"
        )
    foreign = sorted({f"{m}.{n}" for m, n in info.imports if m != "edgestate"})
    if foreign:
        report.problems.append(f"imports outside 'edgestate': {', '.join(foreign)}")
    if info.custom_sections:
        names = ", ".join(f"{n} ({b} B)" for n, b in info.custom_sections)
        report.warnings.append(f"custom sections {names}: strip them, they only slow deploys")
    return report
