"""``edgestate sign`` signs only what a node would load, and keeps other signatures."""

from __future__ import annotations

from pathlib import Path

import pytest
import wasmtime
from click.testing import CliRunner, Result

from edgestate.cli.runtime_cmds import keygen, sign
from edgestate.runtime.signing import parse_signature

from .helpers import manifest, wat

MEM = '(memory (export "memory") 1)'
HANDLE = '(func (export "handle") (result i32) i32.const 0)'


@pytest.fixture
def work(tmp_path: Path) -> Path:
    assert CliRunner().invoke(keygen, ["--out", str(tmp_path / "pub")]).exit_code == 0
    (tmp_path / "hits.wasm").write_bytes(wat("noop"))
    (tmp_path / "hits.manifest.json").write_bytes(manifest("hits", memory_pages=2))
    return tmp_path


def _sign(work: Path, module: str, *extra: str) -> Result:
    args = [str(work / module), "--key", str(work / "pub.key"), *extra]
    return CliRunner().invoke(sign, args)


def test_signing_a_source_file_is_refused_and_keeps_the_real_signature(work: Path) -> None:
    assert _sign(work, "hits.wasm").exit_code == 0
    real = (work / "hits.sig").read_bytes()
    (work / "hits.zig").write_text('const sdk = @import("edgestate.zig");\n')
    result = _sign(work, "hits.zig", "--manifest", str(work / "hits.manifest.json"))
    assert result.exit_code == 1
    assert "error: compile_failed:" in result.output and "not a WebAssembly binary" in result.output
    assert "hits.zig" in result.output
    assert (work / "hits.sig").read_bytes() == real


@pytest.mark.parametrize(
    ("wat_text", "says"),
    [
        (
            "(module " + MEM + ' (func (export "other") (result i32) i32.const 0))',
            "must export its entry 'handle'",
        ),
        (
            "(module " + MEM + ' (func (export "handle") (param i32) (result i32) i32.const 0))',
            "must export its entry 'handle'",
        ),
        (
            '(module (func (export "handle") (result i32) i32.const 0))',
            "must export its linear memory",
        ),
        (
            '(module (memory (export "memory") 3) ' + HANDLE + ")",
            "starts with 3 memory pages but its manifest allows 2",
        ),
        (
            '(module (import "wasi_snapshot_preview1" "fd_write"'
            " (func (param i32 i32 i32 i32) (result i32)))"
            ' (memory (export "memory") 1) (func (export "handle") (result i32) i32.const 0))',
            "imports wasi_snapshot_preview1.fd_write",
        ),
        (
            '(module (import "edgestate" "log" (func (param i32))) (memory (export "memory") 1)'
            ' (func (export "handle") (result i32) i32.const 0))',
            "imports edgestate.log with the wrong type",
        ),
    ],
)
def test_a_module_a_node_would_refuse_is_not_signed(work: Path, wat_text: str, says: str) -> None:
    (work / "hits.wasm").write_bytes(wasmtime.wat2wasm(wat_text))
    result = _sign(work, "hits.wasm")
    assert result.exit_code == 1, result.output
    assert "error: compile_failed:" in result.output and says in result.output
    assert not (work / "hits.sig").exists()


def test_a_signature_of_other_bytes_is_replaced_only_with_force(work: Path) -> None:
    assert _sign(work, "hits.wasm").exit_code == 0
    first = (work / "hits.sig").read_bytes()
    assert _sign(work, "hits.wasm").exit_code == 0  # the same bytes again: fine
    (work / "hits.wasm").write_bytes(wat("big_output"))  # a rebuild
    refused = _sign(work, "hits.wasm")
    assert refused.exit_code == 1 and "error: signature_exists:" in refused.output
    assert "a different wasm" in refused.output and "--force" in refused.output
    assert (work / "hits.sig").read_bytes() == first
    forced = _sign(work, "hits.wasm", "--force")
    assert forced.exit_code == 0, forced.output
    assert parse_signature((work / "hits.sig").read_bytes()).wasm_sha256 != (
        parse_signature(first).wasm_sha256
    )
    (work / "hits.manifest.json").write_bytes(manifest("hits", memory_pages=3))
    other_manifest = _sign(work, "hits.wasm")
    assert other_manifest.exit_code == 1 and "different manifest" in other_manifest.output


def test_a_file_that_is_not_a_signature_is_not_replaced(work: Path) -> None:
    (work / "notes.txt").write_text("release notes\n")
    result = _sign(work, "hits.wasm", "--out", str(work / "notes.txt"))
    assert result.exit_code == 1 and "error: signature_exists:" in result.output
    assert "not a module signature" in result.output
    assert (work / "notes.txt").read_text() == "release notes\n"
