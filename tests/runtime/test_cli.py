"""keygen, sign and invoke through click's runner."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from edgestate.cli.main import cli
from edgestate.cli.runtime_cmds import commands, invoke, keygen, sign
from edgestate.guest import EXAMPLES_DIR, build_example

from .helpers import manifest, wat


def make_policy(tmp_path: Path, public_key: str) -> Path:
    policy = {
        "version": 1,
        "publishers": [
            {
                "name": "me",
                "public_key": public_key,
                "documents": {"read": [], "write": ["counters", "app"]},
                "limits": {
                    "fuel": 10_000_000,
                    "wall_time_ms": 1000,
                    "memory_pages": 64,
                    "max_output_bytes": 4096,
                },
            }
        ],
    }
    path = tmp_path / "trust.json"
    path.write_text(json.dumps(policy))
    return path


def test_commands_are_exported() -> None:
    assert sorted(c.name or "" for c in commands) == ["invoke", "keygen", "sign"]


def test_keygen_sign_invoke_round_trip(tmp_path: Path, guest_build_dir: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(keygen, ["--out", str(tmp_path / "pub")])
    assert result.exit_code == 0, result.output
    public_key = (tmp_path / "pub.pub").read_text().strip()
    assert public_key in result.output
    assert (tmp_path / "pub.key").stat().st_mode & 0o777 == 0o600

    module = tmp_path / "counter.wasm"
    module.write_bytes(build_example("counter", guest_build_dir).read_bytes())
    (tmp_path / "counter.manifest.json").write_bytes(
        (EXAMPLES_DIR / "counter.manifest.json").read_bytes()
    )
    result = runner.invoke(sign, [str(module), "--key", str(tmp_path / "pub.key")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "counter.sig").exists()

    args = [
        str(module),
        "--data",
        str(tmp_path / "data"),
        "--trust",
        str(make_policy(tmp_path, public_key)),
        "--create-documents",
        "--input",
        "clicks",
        "--cache-dir",
        str(tmp_path / "cache"),
    ]
    first = runner.invoke(invoke, args)
    assert first.exit_code == 0, first.output
    assert "status       0" in first.output and "fuel used" in first.output
    assert first.output.rstrip().endswith("1")
    second = runner.invoke(invoke, [*args, "--json"])
    assert second.exit_code == 0, second.output
    doc = json.loads(second.output)
    assert doc["output"] == "2" and doc["status"] == 0 and doc["fuel_used"] > 0
    assert set(doc["timings_ns"]) == {"instantiate", "execute", "commit"}


def test_keygen_refuses_to_overwrite(tmp_path: Path) -> None:
    # Through the whole CLI (its group prints the one error format), not the bare command.
    runner = CliRunner()
    assert runner.invoke(cli, ["keygen", "--out", str(tmp_path / "k")]).exit_code == 0
    again = runner.invoke(cli, ["keygen", "--out", str(tmp_path / "k")])
    assert again.exit_code == 1 and "error: file_exists: " in again.output, again.output


def test_sign_refuses_invalid_manifest(tmp_path: Path) -> None:
    runner = CliRunner()
    runner.invoke(keygen, ["--out", str(tmp_path / "k")])
    (tmp_path / "m.wasm").write_bytes(wat("noop"))
    (tmp_path / "m.manifest.json").write_text('{"name": "BAD"}')
    result = runner.invoke(sign, [str(tmp_path / "m.wasm"), "--key", str(tmp_path / "k.key")])
    assert result.exit_code == 1 and "error: invalid_manifest:" in result.output
    assert not (tmp_path / "m.sig").exists()


def test_invoke_reports_untrusted_module_plainly(tmp_path: Path) -> None:
    runner = CliRunner()
    runner.invoke(keygen, ["--out", str(tmp_path / "k")])
    (tmp_path / "m.wasm").write_bytes(wat("noop"))
    (tmp_path / "m.manifest.json").write_bytes(manifest("noop"))
    runner.invoke(sign, [str(tmp_path / "m.wasm"), "--key", str(tmp_path / "k.key")])
    other = "A" * 43 + "="
    result = runner.invoke(
        invoke,
        [
            str(tmp_path / "m.wasm"),
            "--data",
            str(tmp_path / "d"),
            "--trust",
            str(make_policy(tmp_path, other)),
        ],
    )
    assert result.exit_code == 1 and "error: untrusted_publisher:" in result.output


def test_invoke_reports_failed_invocation(tmp_path: Path) -> None:
    runner = CliRunner()
    runner.invoke(keygen, ["--out", str(tmp_path / "k")])
    public_key = (tmp_path / "k.pub").read_text().strip()
    (tmp_path / "m.wasm").write_bytes(wat("unreachable"))
    (tmp_path / "m.manifest.json").write_bytes(manifest("trap", fuel=1000, max_output_bytes=100))
    runner.invoke(sign, [str(tmp_path / "m.wasm"), "--key", str(tmp_path / "k.key")])
    result = runner.invoke(
        invoke,
        [
            str(tmp_path / "m.wasm"),
            "--data",
            str(tmp_path / "d"),
            "--trust",
            str(make_policy(tmp_path, public_key)),
        ],
    )
    assert result.exit_code == 1 and "error: trap:" in result.output
