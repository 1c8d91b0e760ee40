"""The guest SDKs and the example modules.

SDKs: ``edgestate.h`` (C), ``edgestate.zig``, the Rust crate in ``rust/`` and
the AssemblyScript npm package in ``assemblyscript/``; each example is written
in all four (``examples/NAME.{zig,c,rs,ts}``, one manifest). Builds of the
other languages live in :mod:`edgestate.guest.toolchains`.

The Zig examples are built with the ``ziglang`` package from PyPI, so no
toolchain download is needed. :func:`build_zig` caches each build under the
SHA-256 of its inputs (source, SDK, compiler version, flags), so a test suite
or a script rebuilds only what changed.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from edgestate.errors import ModuleCompileError

SDK_DIR = Path(__file__).resolve().parent
ZIG_SDK = SDK_DIR / "edgestate.zig"
C_HEADER = SDK_DIR / "edgestate.h"
EXAMPLES_DIR = SDK_DIR / "examples"
EXAMPLES = ("counter", "kv_echo", "session_store")

ZIG_FLAGS = (
    "-target",
    "wasm32-freestanding",
    "-fno-entry",
    "-rdynamic",
    "-O",
    "ReleaseSmall",
    "-fstrip",
    # Zig's default 1 MiB stack makes a module start with 17 memory pages, over
    # most manifests' memory_pages; 64 KiB leaves it at 2.
    "--stack",
    "65536",
)
# A cold Zig build of one example takes a few seconds; a hung compiler must
# not hang a test run.
_BUILD_TIMEOUT_S = 300


def example_source(name: str) -> Path:
    """Path of an example's Zig source."""
    if name not in EXAMPLES:
        raise ValueError(f"no example named {name!r}; examples are {', '.join(EXAMPLES)}")
    return EXAMPLES_DIR / f"{name}.zig"


def zig_version() -> str:
    """The installed ziglang's version; PackageNotFoundError when there is none."""
    from importlib.metadata import version

    return version("ziglang")


def build_zig(source: Path, out_dir: Path) -> Path:
    """Build a Zig guest (which may ``@import("edgestate.zig")``) to wasm, cached.

    Returns the path of ``out_dir/STEM-HASH.wasm``.
    """
    text = source.read_bytes()
    key = hashlib.sha256()
    for part in (text, ZIG_SDK.read_bytes(), zig_version().encode(), " ".join(ZIG_FLAGS).encode()):
        key.update(hashlib.sha256(part).digest())
    out = out_dir / f"{source.stem}-{key.hexdigest()[:16]}.wasm"
    if out.exists():
        return out
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="edgestate-zig-") as tmp:
        # Zig refuses imports from outside the root source's directory, so the
        # source and the SDK are built side by side.
        work = Path(tmp)
        shutil.copy(ZIG_SDK, work / ZIG_SDK.name)
        if source.name != ZIG_SDK.name:
            shutil.copy(source, work / source.name)
        built = work / "out.wasm"
        command = [
            sys.executable,
            "-m",
            "ziglang",
            "build-exe",
            source.name,
            *ZIG_FLAGS,
            f"-femit-bin={built}",
        ]
        proc = subprocess.run(
            command, cwd=work, capture_output=True, text=True, timeout=_BUILD_TIMEOUT_S
        )
        if proc.returncode != 0:
            raise ModuleCompileError(f"zig build of {source} failed:\n{proc.stderr.strip()}")
        tmp_out = out.with_suffix(f".tmp{os.getpid()}")
        shutil.copy(built, tmp_out)
        os.replace(tmp_out, out)
    return out


def build_example(name: str, out_dir: Path) -> Path:
    """Build one of :data:`EXAMPLES` into ``out_dir`` (cached)."""
    return build_zig(example_source(name), out_dir)


# Zig builds are deterministic, so the package also ships each example's wasm:
# `edgestate demo` then works where the ziglang toolchain (a test extra) is not
# installed. tests/runtime/test_prebuilt.py keeps them identical to fresh builds;
# `scripts/build_modules.py --update-prebuilt` rewrites them.
PREBUILT_DIR = SDK_DIR / "prebuilt"


def example_wasm(name: str, out_dir: Path, *, toolchain: Callable[[], str] = zig_version) -> bytes:
    """An example's wasm: built from source if ziglang is installed, else the shipped copy.

    ``toolchain`` tells the ziglang version (or raises PackageNotFoundError).
    """
    from importlib.metadata import PackageNotFoundError

    try:
        toolchain()
    except PackageNotFoundError:
        return (PREBUILT_DIR / f"{name}.wasm").read_bytes()
    return build_example(name, out_dir).read_bytes()
