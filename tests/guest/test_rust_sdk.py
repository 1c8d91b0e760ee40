"""The Rust SDK (edgestate/guest/rust): it declares exactly the ABI, its
examples build lean with Debian's rustc (wasm32-unknown-unknown), and they do
what the Zig examples do, locally through `edgestate sign` / `invoke` and on a node."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from edgestate.devkit import Publisher
from edgestate.guest import EXAMPLES, EXAMPLES_DIR
from edgestate.guest.toolchains import RUST_SDK, Rustc, build_rust
from edgestate.guest.wasminfo import inspect_wasm
from edgestate.host.abi import FUNCTIONS, ErrorCode
from tests.guest.conftest import assert_traps_after_logging
from tests.guest.crosslang import assert_does_what_zig_does
from tests.node.conftest import NodeProcess

pytestmark = pytest.mark.timeout(300)  # a cold build of the SDK and three examples

# How the Rust SDK spells each ABI type (wasm32: usize and pointers are i32).
RUST_TYPES = {"i32": "i32", "usize": "i32", "i64": "i64"}


def _rust_type(text: str) -> str:
    return "i32" if text.startswith("*") else RUST_TYPES[text]


def test_rust_sdk_declares_the_abi() -> None:
    text = RUST_SDK.read_text()
    raw = text[text.index("pub mod raw") : text.index("pub enum Error")]
    declared = {}
    for name, params, result in re.findall(r"pub fn (\w+)\(([^)]*)\)(?: -> (\w+))?;", raw):
        pairs = [p.split(":") for p in params.split(",") if p.strip()]
        declared[name] = (
            [{"name": n.strip(), "type": _rust_type(t.strip())} for n, t in pairs],
            [result] if result else [],
        )
    abi = json.loads((Path(__file__).resolve().parents[2] / "schemas/host-abi.json").read_text())
    assert declared == {f["name"]: (f["params"], f["results"]) for f in abi["functions"]}
    assert set(declared) == {f.name for f in FUNCTIONS}
    assert '#[link(wasm_import_module = "edgestate")]' in raw
    # from_code and code() map every ABI code both ways, in the ABI's order.
    mapped = re.findall(r"(-\d+) => Error::(\w+),", text)
    reverse = re.findall(r"Error::(\w+) => (-\d+),", text)
    camel = [c.name.title().replace("_", "") for c in ErrorCode]
    assert mapped == [(str(c.value), n) for c, n in zip(ErrorCode, camel, strict=True)]
    assert reverse == [(n, str(c.value)) for c, n in zip(ErrorCode, camel, strict=True)]


@pytest.mark.parametrize("example", EXAMPLES)
def test_rust_example_builds_lean(example: str, rustc: Rustc, build_dir: Path) -> None:
    wasm = build_rust(EXAMPLES_DIR / f"{example}.rs", build_dir, rustc=rustc)
    info = inspect_wasm(wasm.read_bytes())
    manifest = json.loads((EXAMPLES_DIR / f"{example}.manifest.json").read_text())
    assert info.size < 4096, info
    assert info.custom_sections == [], info  # stripped: no names, no debug info
    assert info.initial_pages <= 2 < manifest["limits"]["memory_pages"], info  # 64 KiB stack
    assert info.exports_entry("handle") and info.exports_memory, info
    assert build_rust(EXAMPLES_DIR / f"{example}.rs", build_dir, rustc=rustc) == wasm  # cached


@pytest.mark.parametrize("example", EXAMPLES)
def test_rust_example_does_what_the_zig_one_does(
    example: str,
    rustc: Rustc,
    build_dir: Path,
    publisher: Publisher,
    sdk_node: NodeProcess,
    tmp_path: Path,
) -> None:
    rust = build_rust(EXAMPLES_DIR / f"{example}.rs", build_dir, rustc=rustc)
    assert_does_what_zig_does(
        rust, "rust", example, build_dir, publisher, sdk_node.client, tmp_path
    )


PANICS = """#![no_std]
fn run() -> edgestate::Result<()> {
    let mut buf = [0u8; 8];
    let n = edgestate::input(&mut buf).map(|b| b.len()).unwrap_or(0);
    buf[n + 20] = 1; // out of bounds: the bounds check panics
    Ok(())
}
edgestate::entry!(run);
"""


@pytest.mark.parametrize(
    ("features", "logged"),
    [((), "panicked"), (("panic-message",), "index out of bounds: the len is 8")],
)
def test_rust_panic_is_logged_before_the_trap(
    features: tuple[str, ...],
    logged: str,
    rustc: Rustc,
    build_dir: Path,
    tmp_path: Path,
    publisher: Publisher,
    caplog: pytest.LogCaptureFixture,
) -> None:
    source = tmp_path / "panics.rs"
    source.write_text(PANICS)
    wasm = build_rust(source, build_dir, rustc=rustc, features=features).read_bytes()
    assert_traps_after_logging(wasm, "panics", publisher, tmp_path / "data", caplog, logged)


def _rustc_without_wasm32(directory: Path, real: Rustc) -> Path:
    """A real rustc whose sysroot lacks the wasm32 std: what a rustup toolchain
    without `rustup target add wasm32-unknown-unknown` is."""
    empty = directory / "sysroot"
    (empty / "lib" / "rustlib").mkdir(parents=True)
    wrapper = directory / "bin" / "rustc"
    wrapper.parent.mkdir()
    wrapper.write_text(f'#!/bin/sh\nexec {real.path} --sysroot {empty} "$@"\n')
    wrapper.chmod(0o755)
    return wrapper


def test_find_rustc_skips_a_rustc_without_the_wasm32_target(
    rustc: Rustc, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import subprocess

    from edgestate.errors import ToolchainError
    from edgestate.guest.toolchains import find_rustc

    wrapper = _rustc_without_wasm32(tmp_path, rustc)
    source = tmp_path / "lib.rs"
    source.write_text("#![no_std]\n")
    proc = subprocess.run(
        [str(wrapper), "--target", "wasm32-unknown-unknown", "--crate-type", "rlib", str(source)],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode != 0 and "E0463" in proc.stderr  # the failure authors would see

    monkeypatch.delenv("EDGESTATE_RUSTC", raising=False)
    monkeypatch.setenv("PATH", f"{wrapper.parent}{os.pathsep}{Path(rustc.path).parent}")
    assert os.path.realpath(find_rustc().path) == os.path.realpath(rustc.path)  # skipped it

    monkeypatch.setenv("PATH", str(wrapper.parent))
    with pytest.raises(ToolchainError) as caught:
        find_rustc(fallbacks=())
    message = str(caught.value)
    assert str(wrapper) in message and "no wasm32-unknown-unknown std" in message
    assert "libstd-rust-dev-wasm32" in message  # and how to get one
