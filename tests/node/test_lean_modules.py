"""Lean modules: ``edgestate sign`` and ``deploy`` warn about debug sections and
modules far larger than their code (real Zig builds, a WAT module with a custom
section appended by hand), and the trust policy's ``max_module_bytes`` refuses an
oversized module at deploy and by replication, on real node subprocesses."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import wasmtime

from edgestate.devkit import Publisher, make_publisher
from edgestate.errors import ConfigError
from edgestate.guest import EXAMPLES_DIR, ZIG_FLAGS, ZIG_SDK, build_example
from edgestate.runtime import TrustPolicy
from tests.node.api_check import call
from tests.node.conftest import NodeProcess, eventually, start_node
from tests.node.test_modules_e2e import BUILD, WAT
from tests.schemas import validate

COUNTER_MANIFEST = EXAMPLES_DIR / "counter.manifest.json"


def _debug_counter(directory: Path) -> Path:
    """The counter example built the way a first try builds it: -O Debug, unstripped."""
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copy(ZIG_SDK, directory / ZIG_SDK.name)
    shutil.copy(EXAMPLES_DIR / "counter.zig", directory / "counter.zig")
    flags = list(ZIG_FLAGS)
    flags[flags.index("ReleaseSmall")] = "Debug"
    flags.remove("-fstrip")
    out = directory / "counter.wasm"
    subprocess.run(
        [sys.executable, "-m", "ziglang", "build-exe", "counter.zig", *flags, f"-femit-bin={out}"],
        cwd=directory, check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    shutil.copy(COUNTER_MANIFEST, directory / "counter.manifest.json")
    return out


def _lean_counter(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    out = directory / "counter.wasm"
    shutil.copy(build_example("counter", BUILD), out)
    shutil.copy(COUNTER_MANIFEST, directory / "counter.manifest.json")
    return out


def _uleb(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def with_custom_section(wasm: bytes, name: str, payload: bytes) -> bytes:
    """``wasm`` with a custom section appended: id 0, LEB128 size, name, bytes."""
    encoded = name.encode()
    body = _uleb(len(encoded)) + encoded + payload
    return wasm + b"\x00" + _uleb(len(body)) + body


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgestate.cli.main", *args],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def _sign(wasm: Path, publisher: Publisher, *extra: str) -> subprocess.CompletedProcess[str]:
    return _cli("sign", str(wasm), "--key", str(publisher.key_path), *extra)


def _deploy(node: NodeProcess, wasm: Path) -> subprocess.CompletedProcess[str]:
    return _cli("deploy", str(wasm), "--node", node.api, "--token", node.token)


def _capped_policy(publisher: Publisher, cap: int, path: Path) -> Path:
    policy = json.loads(publisher.policy_path.read_text())
    policy["publishers"][0]["max_module_bytes"] = cap
    path.write_text(json.dumps(policy))
    return path


def _row(node: NodeProcess, name: str) -> dict[str, Any] | None:
    rows = call(node.api, "GET", "/v1/admin/modules", token=node.token).json()["modules"]
    return next((r for r in rows if r["name"] == name), None)


def test_sign_warns_about_an_unstripped_zig_build_and_still_signs(tmp_path: Path) -> None:
    publisher = make_publisher(tmp_path / "pub")
    wasm = _debug_counter(tmp_path / "debug")
    result = _sign(wasm, publisher)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "debug" / "counter.sig").exists()
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 2, result.stderr
    assert ".debug_info (" in warnings[0] and ".debug_line (" in warnings[0]
    assert "-fstrip" in warnings[0] and "strip=symbols" in warnings[0]
    assert "wasm-opt --strip-debug" in warnings[0]
    assert f"module is {wasm.stat().st_size} bytes" in warnings[1]

    as_json = _sign(wasm, publisher, "--json")
    assert as_json.returncode == 0, as_json.stderr
    report = json.loads(as_json.stdout)
    validate("cli/sign.schema.json", report)
    assert report["wasm_bytes"] == wasm.stat().st_size
    assert [w["code"] for w in report["warnings"]] == ["debug_sections", "oversized"]
    sections = {s["name"]: s["bytes"] for s in report["warnings"][0]["sections"]}
    assert sections[".debug_info"] > 10_000


def test_sign_names_a_big_custom_section_of_a_wat_module(tmp_path: Path) -> None:
    publisher = make_publisher(tmp_path / "pub")
    wasm = wasmtime.wat2wasm((WAT / "noop.wat").read_text())
    blob = with_custom_section(wasm, "sourcemap-blob", b"x" * 20_000)
    path = tmp_path / "noop.wasm"
    path.write_bytes(blob)
    (tmp_path / "noop.manifest.json").write_text(
        json.dumps(
            {
                "name": "noop",
                "version": "1.0.0",
                "documents": {"read": [], "write": []},
                "limits": {"fuel": 100_000, "memory_pages": 4, "max_output_bytes": 1024},
            }
        )
    )
    result = _sign(path, publisher, "--json")
    assert result.returncode == 0, result.stderr
    section_bytes = 1 + len("sourcemap-blob") + 20_000
    assert f"warning: module carries {section_bytes} bytes" in result.stderr
    assert f"sourcemap-blob ({section_bytes} bytes)" in result.stderr
    report = json.loads(result.stdout)
    validate("cli/sign.schema.json", report)
    assert report["warnings"][0]["sections"] == [{"name": "sourcemap-blob", "bytes": section_bytes}]


def test_a_lean_module_signs_with_no_warning(tmp_path: Path) -> None:
    publisher = make_publisher(tmp_path / "pub")
    wasm = _lean_counter(tmp_path / "lean")
    result = _sign(wasm, publisher, "--json")
    assert result.returncode == 0, result.stderr
    assert "warning" not in result.stderr
    report = json.loads(result.stdout)
    validate("cli/sign.schema.json", report)
    assert report["warnings"] == [] and report["name"] == "counter"


def test_deploy_warns_then_deploys_and_the_policy_cap_refuses(tmp_path: Path) -> None:
    publisher = make_publisher(tmp_path / "pub")
    debug = _debug_counter(tmp_path / "debug")
    lean = _lean_counter(tmp_path / "lean")
    for wasm in (debug, lean):
        assert _sign(wasm, publisher).returncode == 0
    size = debug.stat().st_size
    cap = 64 << 10
    assert lean.stat().st_size < cap < size
    free = start_node(tmp_path / "free", "--no-mdns", "--trust-policy", str(publisher.policy_path))
    capped_policy = _capped_policy(publisher, cap, tmp_path / "capped-policy.json")
    capped_args = ("--no-mdns", "--trust-policy", str(capped_policy))
    nodes = [free]
    try:
        # No cap: deployed, after the same warnings sign gives.
        result = _deploy(free, debug)
        assert result.returncode == 0, result.stderr
        assert "warning: module carries" in result.stderr and ".debug_info (" in result.stderr
        assert (_row(free, "counter") or {}).get("state") == "active"

        # Capped: refused at deploy, naming the module's size and the cap.
        capped = start_node(tmp_path / "capped", *capped_args)
        nodes.append(capped)
        result = _deploy(capped, debug)
        assert result.returncode == 1, result.stdout + result.stderr
        assert "error: policy_violation: " in result.stderr
        assert f"is {size} bytes, over its policy's max_module_bytes of {cap}" in result.stderr
        assert _row(capped, "counter") is None

        # The lean build fits the cap, deploys with no warning.
        result = _deploy(capped, lean)
        assert result.returncode == 0, result.stderr
        assert "warning" not in result.stderr
        assert (_row(capped, "counter") or {}).get("state") == "active"
    finally:
        for node in nodes:
            node.stop()


def test_the_policy_cap_refuses_an_oversized_module_arriving_by_replication(
    tmp_path: Path,
) -> None:
    publisher = make_publisher(tmp_path / "pub")
    debug = _debug_counter(tmp_path / "debug")
    assert _sign(debug, publisher).returncode == 0
    size, cap = debug.stat().st_size, 64 << 10
    capped_policy = _capped_policy(publisher, cap, tmp_path / "capped-policy.json")
    free = start_node(tmp_path / "free", "--no-mdns", "--trust-policy", str(publisher.policy_path))
    nodes = [free]
    try:
        peer = f"127.0.0.1:{free.sync_port}"
        capped = start_node(
            tmp_path / "capped", "--no-mdns", "--trust-policy", str(capped_policy), "--peer", peer
        )
        nodes.append(capped)
        assert _deploy(free, debug).returncode == 0
        row = eventually(
            lambda: (r := _row(capped, "counter")) and r.get("error_code") and r,
            what="replicated module refused on the capped node",
        )
        assert row["state"] == "refused" and row["error_code"] == "policy_violation"
        assert f"{size} bytes" in row["error"] and f"max_module_bytes of {cap}" in row["error"]
        assert (_row(free, "counter") or {}).get("state") == "active"
    finally:
        for node in nodes:
            node.stop()


@pytest.mark.parametrize("bad", [0, -1, "65536", True, 1.5])
def test_max_module_bytes_is_parsed_strictly(tmp_path: Path, bad: object) -> None:
    publisher = make_publisher(tmp_path / "pub")
    policy = json.loads(publisher.policy_path.read_text())
    policy["publishers"][0]["max_module_bytes"] = bad
    with pytest.raises(ConfigError, match=r"publishers\[0\]\.max_module_bytes must be a positive"):
        TrustPolicy.from_dict(policy)
    policy["publishers"][0]["max_module_bytes"] = 65536
    assert TrustPolicy.from_dict(policy).publishers[0].max_module_bytes == 65536
