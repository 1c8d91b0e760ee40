"""`edgestate new` + `build` + `invoke` round trip in every language, with the
real toolchains; `build` reports against the manifest and refuses what a node
would refuse."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgestate.cli.main import cli
from edgestate.devkit import Publisher
from edgestate.guest.toolchains import Asc, Rustc
from edgestate.guest.wasminfo import inspect_wasm

pytestmark = pytest.mark.timeout(300)


def edgestate(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output


@pytest.fixture
def toolchains(request: pytest.FixtureRequest, lang: str) -> None:
    # Only the toolchain this language needs is looked up (and installed if missing).
    if lang == "rust":
        request.getfixturevalue("rustc")
    elif lang == "as":
        request.getfixturevalue("asc")


@pytest.mark.parametrize("lang", ["zig", "c", "rust", "as"])
def test_new_build_invoke_round_trip(
    lang: str, toolchains: None, tmp_path: Path, publisher: Publisher
) -> None:
    code, out = edgestate("new", f"hello-{lang}", "--lang", lang, "--dir", str(tmp_path))
    assert code == 0, out
    project = tmp_path / f"hello-{lang}"
    stem = f"hello_{lang}"
    assert {"README.md", "input.txt", f"{stem}.manifest.json"} <= {
        p.name for p in project.iterdir()
    }
    assert "edgestate dev" in (project / "README.md").read_text()

    code, out = edgestate("build", str(project), "--json")
    assert code == 0, out
    report = json.loads(out)
    wasm = project / f"{stem}.wasm"
    assert report["wasm"] == str(wasm) and report["problems"] == [] and report["warnings"] == []
    assert report["initial_pages"] <= report["memory_pages"]
    assert report["size"] == wasm.stat().st_size < (16384 if lang == "as" else 4096)

    code, out = edgestate("sign", str(wasm), "--key", str(publisher.key_path))
    assert code == 0, out
    totals = []
    for _ in range(2):
        code, out = edgestate(
            "invoke", str(wasm), "--data", str(tmp_path / "data"),
            "--trust", str(publisher.policy_path),
            "--input-file", str(project / "input.txt"), "--create-documents", "--json",
        )  # fmt: skip
        assert code == 0, out
        totals.append(json.loads(out)["output"])
    assert totals == ["1", "2"]


def test_new_refuses_an_existing_folder_and_bad_names(tmp_path: Path) -> None:
    assert edgestate("new", "twice", "--lang", "zig", "--dir", str(tmp_path))[0] == 0
    code, out = edgestate("new", "twice", "--lang", "c", "--dir", str(tmp_path))
    assert code == 1 and "exists; refusing to overwrite" in out
    code, out = edgestate("new", "Bad_Name", "--lang", "c", "--dir", str(tmp_path))
    assert code == 1 and "lower-case letters" in out


def test_build_refuses_what_the_node_would_refuse(tmp_path: Path) -> None:
    assert edgestate("new", "tight", "--lang", "c", "--dir", str(tmp_path))[0] == 0
    project = tmp_path / "tight"
    manifest = json.loads((project / "tight.manifest.json").read_text())
    manifest["limits"]["memory_pages"] = 1  # the 64 KiB stack alone needs 2
    manifest["entry"] = "run"  # the C source exports handle
    (project / "tight.manifest.json").write_text(json.dumps(manifest))
    code, out = edgestate("build", str(project))
    assert code == 1
    assert "starts with 2 memory pages, over the manifest's limits.memory_pages = 1" in out
    assert "entry 'run' is not an exported function" in out


def test_rust_project_builds_with_cargo_too(rustc: Rustc, tmp_path: Path) -> None:
    assert edgestate("new", "crate", "--lang", "rust", "--dir", str(tmp_path))[0] == 0
    project = tmp_path / "crate"
    cargo = Path(rustc.path).with_name("cargo")
    env = {**os.environ, "RUSTC": rustc.path, "CARGO_HOME": str(tmp_path / "cargo-home")}
    proc = subprocess.run(
        [str(cargo), "build", "--offline", "--release"],
        cwd=project, env=env, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    info = inspect_wasm((project / "target/wasm32-unknown-unknown/release/crate.wasm").read_bytes())
    assert info.exports_entry("handle") and info.initial_pages == 2 and info.size < 4096


def test_build_names_the_missing_toolchain(tmp_path: Path) -> None:
    assert edgestate("new", "nodejs", "--lang", "as", "--dir", str(tmp_path))[0] == 0
    env = {"EDGESTATE_ASC": str(tmp_path / "no-such-asc"), "PATH": "/nonexistent"}
    result = CliRunner().invoke(cli, ["build", str(tmp_path / "nodejs")], env=env)
    assert result.exit_code == 1
    assert "toolchain_unavailable" in result.output and "node on PATH" in result.output


def test_assemblyscript_project_installs_the_sdk_from_its_path(asc: Asc, tmp_path: Path) -> None:
    # `npm install` in a new project: asc from npm and the SDK package by path,
    # both project-local; `edgestate build` then uses that asc.
    assert edgestate("new", "npm-made", "--lang", "as", "--dir", str(tmp_path))[0] == 0
    project = tmp_path / "npm-made"
    proc = subprocess.run(
        ["npm", "install", "--no-audit", "--no-fund", "--prefer-offline"],
        cwd=project, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert (project / "node_modules" / "edgestate-sdk" / "assembly" / "index.ts").exists()
    code, out = edgestate("build", str(project), "--json")
    assert code == 0, out
    report = json.loads(out)
    assert str(project / "node_modules" / ".bin" / "asc") in report["toolchain"]
    assert report["problems"] == [] and report["size"] < 16384
