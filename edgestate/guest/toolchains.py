"""Finding and running the compilers of guest modules: rustc for Rust (C and Zig
go through ``ziglang`` in :mod:`edgestate.guest`; AssemblyScript through
:mod:`edgestate.guest.assemblyscript`).

Every build is cached under the SHA-256 of its inputs (sources, SDK, compiler
version, flags), like :func:`edgestate.guest.build_zig`, so tests and scripts
rebuild only what changed.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from edgestate.errors import ToolchainError

GUEST_DIR = Path(__file__).resolve().parent
RUST_SDK_DIR = GUEST_DIR / "rust"
RUST_SDK = RUST_SDK_DIR / "src" / "lib.rs"
RUST_TARGET = "wasm32-unknown-unknown"
# Lean settings: size-optimised, no unwinding tables, one codegen unit and LTO so
# unused SDK code and panics disappear, symbols stripped. rustc's default stack
# is 1 MiB (17 initial pages, more than most manifests allow); 64 KiB gives 2.
RUST_STACK_BYTES = 65536
RUST_FLAGS = (
    "--edition",
    "2021",
    "--target",
    RUST_TARGET,
    "-C",
    "opt-level=z",
    "-C",
    "panic=abort",
)
RUST_LINK_FLAGS = (
    "-C",
    "lto",
    "-C",
    "codegen-units=1",
    "-C",
    "strip=symbols",
    "-C",
    f"link-arg=-zstack-size={RUST_STACK_BYTES}",
)
RUST_FEATURES = ("alloc", "panic-message")
# A cold rustc build takes well under a minute; a hung compiler must not hang a run.
BUILD_TIMEOUT_S = 300
RUST_INSTALL_HINT = (
    "Install one with the wasm32 std: `apt-get install rustc cargo libstd-rust-dev-wasm32` "
    "(Debian), or `rustup target add wasm32-unknown-unknown`; or set EDGESTATE_RUSTC"
)


@dataclass(frozen=True, slots=True)
class Rustc:
    """A rustc that can build ``wasm32-unknown-unknown``."""

    path: str
    version: str
    sysroot: Path


def _candidates(env_var: str, name: str, extra: Iterable[str]) -> list[str]:
    found: list[str] = []
    if os.environ.get(env_var):
        found.append(os.environ[env_var])
    for entry in os.environ.get("PATH", "").split(os.pathsep):
        path = os.path.join(entry, name)
        if os.access(path, os.X_OK):
            found.append(path)
    found += [p for p in extra if os.access(p, os.X_OK)]
    # The same binary may be on PATH twice (/bin and /usr/bin on merged-/usr).
    unique: list[str] = []
    seen: set[str] = set()
    for path in found:
        real = os.path.realpath(path)
        if real not in seen:
            seen.add(real)
            unique.append(path)
    return unique


def _run(command: Sequence[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(command), cwd=cwd, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S
    )


# Where Debian puts the rustc that libstd-rust-dev-wasm32 completes.
DEBIAN_RUSTC = "/usr/bin/rustc"


def find_rustc(fallbacks: Sequence[str] = (DEBIAN_RUSTC,)) -> Rustc:
    """The first rustc with the wasm32 std: ``$EDGESTATE_RUSTC``, then PATH, then ``fallbacks``.

    A rustup rustc is often first on PATH without the wasm32 target (its builds
    fail with E0463, "can't find crate for core"): it is skipped, and named in
    the error when no candidate has the target.
    """
    tried: list[str] = []
    for path in _candidates("EDGESTATE_RUSTC", "rustc", fallbacks):
        try:
            version = _run([path, "--version"])
            sysroot = _run([path, "--print", "sysroot"])
        except (OSError, subprocess.SubprocessError) as exc:
            tried.append(f"{path}: {exc}")
            continue
        if version.returncode != 0 or sysroot.returncode != 0:
            tried.append(f"{path}: does not run ({(version.stderr or sysroot.stderr).strip()})")
            continue
        root = Path(sysroot.stdout.strip())
        lib = root / "lib" / "rustlib" / RUST_TARGET / "lib"
        if lib.is_dir() and any(p.name.startswith("libcore-") for p in lib.iterdir()):
            return Rustc(path, version.stdout.strip(), root)
        tried.append(f"{path} ({version.stdout.strip()}): no {RUST_TARGET} std under {root}")
    raise ToolchainError(
        f"no rustc that can build {RUST_TARGET}; tried: "
        + ("; ".join(tried) or "none on PATH")
        + f". {RUST_INSTALL_HINT}"
    )


def cache_key(parts: Iterable[bytes]) -> str:
    """Hex digest over ``parts`` (each hashed first, so boundaries count)."""
    key = hashlib.sha256()
    for part in parts:
        key.update(hashlib.sha256(part).digest())
    return key.hexdigest()[:16]


def install_output(built: Path, out: Path) -> Path:
    """Move a fresh build to its cached name atomically (parallel builds race)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(f".tmp{os.getpid()}")
    shutil.copy(built, tmp)
    os.replace(tmp, out)
    return out


def _feature_flags(features: Sequence[str]) -> list[str]:
    for f in features:
        if f not in RUST_FEATURES:
            raise ToolchainError(f"unknown feature {f!r} of the Rust SDK; one of {RUST_FEATURES}")
    return [arg for f in sorted(features) for arg in ("--cfg", f'feature="{f}"')]


def build_rust(
    source: Path,
    out_dir: Path,
    *,
    features: Sequence[str] = (),
    rustc: Rustc | None = None,
) -> Path:
    """Build a single-file Rust module (``use edgestate::...``) to wasm, cached.

    The SDK crate is compiled to an rlib and the module linked against it with
    :data:`RUST_LINK_FLAGS`; no Cargo, no registry. Returns
    ``out_dir/STEM-HASH.wasm``.
    """
    rustc = rustc or find_rustc()
    source = source.resolve()
    flags = _feature_flags(features)
    key = cache_key(
        [
            source.read_bytes(),
            RUST_SDK.read_bytes(),
            rustc.version.encode(),
            " ".join((*RUST_FLAGS, *RUST_LINK_FLAGS, *flags)).encode(),
        ]
    )
    out = out_dir / f"{source.stem}-rs-{key}.wasm"
    if out.exists():
        return out
    with tempfile.TemporaryDirectory(prefix="edgestate-rust-") as tmp:
        work = Path(tmp)
        rlib = work / "libedgestate.rlib"
        sdk = ["--crate-type", "rlib", "--crate-name", "edgestate", str(RUST_SDK)]
        module = ["--crate-type", "cdylib", "--extern", f"edgestate={rlib}", str(source)]
        steps = [
            [rustc.path, *RUST_FLAGS, *flags, *sdk, "-o", str(rlib)],
            [rustc.path, *RUST_FLAGS, *RUST_LINK_FLAGS, *module, "-o", str(work / "out.wasm")],
        ]
        for command in steps:
            proc = _run(command, cwd=work)
            if proc.returncode != 0:
                raise ToolchainError(
                    f"rustc build of {source} failed ({rustc.path}):\n{proc.stderr.strip()}"
                )
        return install_output(work / "out.wasm", out)


# C goes through the ziglang package's clang (`python -m ziglang cc`): no
# system compiler, no wasi-libc. ES_EXPORT in the header exports the entry;
# --strip-all drops names and debug info; the stack is Zig's and Rust's 64 KiB.
C_FLAGS = (
    "--target=wasm32-freestanding",
    "-nostdlib",
    "-Os",
    "-Wl,--no-entry",
    "-Wl,--strip-all",
    f"-Wl,-z,stack-size={RUST_STACK_BYTES}",
)
ZIG_INSTALL_HINT = "pip install 'edgestate[sdk]' (the ziglang package from PyPI)"


def find_zig() -> str:
    """The ziglang package's version; ToolchainError when it is not installed."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ziglang")
    except PackageNotFoundError:
        raise ToolchainError(f"no Zig toolchain; {ZIG_INSTALL_HINT}") from None


def build_c(source: Path, out_dir: Path) -> Path:
    """Build a C module (``#include "edgestate.h"``) with ``ziglang cc``, cached."""
    import sys

    source = source.resolve()
    header = GUEST_DIR / "edgestate.h"
    key = cache_key(
        [source.read_bytes(), header.read_bytes(), find_zig().encode(), *map(str.encode, C_FLAGS)]
    )
    out = out_dir / f"{source.stem}-c-{key}.wasm"
    if out.exists():
        return out
    with tempfile.TemporaryDirectory(prefix="edgestate-c-") as tmp:
        built = Path(tmp) / "out.wasm"
        command = [sys.executable, "-m", "ziglang", "cc", *C_FLAGS, f"-I{GUEST_DIR}"]
        proc = _run([*command, "-o", str(built), str(source)], cwd=source.parent)
        if proc.returncode != 0:
            raise ToolchainError(f"C build of {source} failed:\n{proc.stderr.strip()}")
        return install_output(built, out)


# AssemblyScript: the project-local `asc` from npm (never a global one). The
# stub runtime never frees, which is right for an instance that lives for one
# request, and is the smallest; -O3z optimises for speed and size; abort (throw,
# assert, bounds) is routed to the SDK's handler, which logs before trapping,
# since the host has no `env.abort`.
AS_SDK_DIR = GUEST_DIR / "assemblyscript"
AS_PACKAGE = "edgestate-sdk"
AS_FLAGS = (
    "--runtime",
    "stub",
    "-O3z",
    "--use",
    f"abort=~lib/{AS_PACKAGE}/assembly/index/abortHandler",
)
AS_INSTALL_HINT = (
    "run `scripts/bootstrap --toolchains` in an edgestate checkout, or "
    "`npm install --save-dev assemblyscript` in your project (npm, never -g); or set EDGESTATE_ASC"
)


@dataclass(frozen=True, slots=True)
class Asc:
    """An AssemblyScript compiler and the node that runs it."""

    path: str
    version: str


def find_asc(project: Path | None = None) -> Asc:
    """``$EDGESTATE_ASC``, else ``node_modules/.bin/asc`` of ``project``, else the SDK's own."""
    tried: list[str] = []
    candidates = [os.environ.get("EDGESTATE_ASC", "")]
    if project is not None:
        candidates.append(str(project / "node_modules" / ".bin" / "asc"))
    candidates.append(str(AS_SDK_DIR / "node_modules" / ".bin" / "asc"))
    if shutil.which("node") is None:
        raise ToolchainError(f"AssemblyScript needs node on PATH; {AS_INSTALL_HINT}")
    for path in filter(None, candidates):
        if not os.access(path, os.X_OK):
            tried.append(f"{path}: absent")
            continue
        proc = _run([path, "--version"])
        if proc.returncode == 0:
            return Asc(path, proc.stdout.strip())
        tried.append(f"{path}: {proc.stderr.strip()}")
    raise ToolchainError(f"no AssemblyScript compiler; tried {'; '.join(tried)}. {AS_INSTALL_HINT}")


def _as_sdk_bytes() -> list[bytes]:
    files = sorted([AS_SDK_DIR / "index.ts", *(AS_SDK_DIR / "assembly").glob("*.ts")])
    return [p.read_bytes() for p in files]


def build_as(source: Path, out_dir: Path, *, asc: Asc | None = None) -> Path:
    """Build an AssemblyScript module (``import ... from "edgestate-sdk"``) to wasm, cached.

    The source compiles where it is (its relative imports work); the shipped SDK
    is found through ``--path`` as if installed in node_modules.
    """
    asc = asc or find_asc(source.parent)
    source = source.resolve()
    key = cache_key(
        [source.read_bytes(), *_as_sdk_bytes(), asc.version.encode(), *map(str.encode, AS_FLAGS)]
    )
    out = out_dir / f"{source.stem}-as-{key}.wasm"
    if out.exists():
        return out
    with tempfile.TemporaryDirectory(prefix="edgestate-as-") as tmp:
        packages = Path(tmp) / "packages"
        packages.mkdir()
        (packages / AS_PACKAGE).symlink_to(AS_SDK_DIR, target_is_directory=True)
        built = Path(tmp) / "out.wasm"
        command = [asc.path, str(source), "-o", str(built), *AS_FLAGS, "--path", str(packages)]
        proc = _run(command, cwd=source.parent)
        if proc.returncode != 0 or not built.exists():
            raise ToolchainError(
                f"AssemblyScript build of {source} failed:\n{(proc.stderr or proc.stdout).strip()}"
            )
        return install_output(built, out)
