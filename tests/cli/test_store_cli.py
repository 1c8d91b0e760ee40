"""`edgestate inspect` and `edgestate kv` against real data directories."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgestate.cli.main import cli
from edgestate.store import Set, Store
from tests.schemas import validate


def run(*args: str, code: int = 0) -> str:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == code, (result.output, result.stderr)
    return result.stdout


@pytest.fixture
def data(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    with Store.open(path) as s:
        s.create_document("sessions")
        s.create_document("counters")
        s.batch([Set("sessions", f"user:{i}", f"name{i}".encode()) for i in range(5)])
        s.set("sessions", "blob", b"\xff\x00\x01")
        s.incr("counters", "hits", 42)
    return path


def test_inspect_docs_table_and_json(data: Path) -> None:
    table = run("inspect", "--data", str(data), "docs")
    assert "sessions" in table and "counters" in table and "LOG ENTRIES" in table
    out = json.loads(run("inspect", "--data", str(data), "docs", "--json"))
    validate("cli/inspect-docs.schema.json", out)
    by_name = {d["name"]: d for d in out["documents"]}
    assert by_name["sessions"]["keys"] == 6
    assert by_name["counters"]["keys"] == 1


def test_inspect_get_plain_binary_counter_and_absent(data: Path) -> None:
    assert run("inspect", "--data", str(data), "get", "sessions", "user:1").strip() == "name1"
    assert run("inspect", "--data", str(data), "get", "sessions", "blob").strip() == "0xff0001"
    assert run("inspect", "--data", str(data), "get", "counters", "hits").strip() == "42"
    out = json.loads(run("inspect", "--data", str(data), "get", "counters", "hits", "--json"))
    validate("cli/inspect-get.schema.json", out)
    assert out["counter"] == 42 and out["type"] == "counter"
    absent = json.loads(
        run("inspect", "--data", str(data), "get", "sessions", "nope", "--json", code=3)
    )
    validate("cli/inspect-get.schema.json", absent)
    assert absent["found"] is False


def test_inspect_scan_pages_with_cursor(data: Path) -> None:
    first = json.loads(
        run("inspect", "--data", str(data), "scan", "sessions", "user:", "--limit", "3", "--json")
    )
    validate("cli/inspect-scan.schema.json", first)
    assert [i["key"] for i in first["items"]] == ["user:0", "user:1", "user:2"]
    rest = json.loads(
        run(
            "inspect",
            "--data",
            str(data),
            "scan",
            "sessions",
            "user:",
            "--limit",
            "3",
            "--cursor",
            first["cursor"],
            "--json",
        )
    )
    assert [i["key"] for i in rest["items"]] == ["user:3", "user:4"]
    assert rest["cursor"] is None
    table = run("inspect", "--data", str(data), "scan", "sessions", "--limit", "2")
    assert "more: --cursor" in table


def test_inspect_stats_json(data: Path) -> None:
    out = json.loads(run("inspect", "--data", str(data), "stats", "--json"))
    validate("cli/inspect-stats.schema.json", out)
    assert out["documents"] == 2 and out["keys"] == 7


def test_kv_put_get_incr_delete(data: Path) -> None:
    run("kv", "--data", str(data), "put", "sessions", "k", "v1")
    run("kv", "--data", str(data), "put", "sessions", "bin", "00ff", "--hex")
    assert run("kv", "--data", str(data), "get", "sessions", "k").strip() == "v1"
    assert run("kv", "--data", str(data), "incr", "counters", "hits", "-2").strip() == "40"
    run("kv", "--data", str(data), "delete", "sessions", "k")
    run("kv", "--data", str(data), "get", "sessions", "k", code=3)
    run("kv", "--data", str(data), "put", "newdoc", "k", "v", "--create")
    with Store.open(data, readonly=True) as s:
        assert s.get("sessions", "bin") == b"\x00\xff"
        assert s.get("newdoc", "k") == b"v"


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["kv", "put", "nodoc", "k", "v"], 1, "unknown_document"),
        (["kv", "put", "sessions", "k", "zz", "--hex"], 2, "not hex"),
        (["kv", "incr", "sessions", "user:1"], 1, "wrong_type"),
        (["kv", "incr", "counters", "hits", "notanumber"], 2, "not a valid integer"),
        (["inspect", "scan", "sessions", "--cursor", "garbage"], 1, "invalid_cursor"),
        (["inspect", "scan", "sessions", "--limit", "0"], 2, "0 is not in the range"),
        (["inspect", "get", "bad/doc", "k"], 1, "invalid_document_name"),
        (["kv", "put", "sessions", "", "v"], 1, "invalid_key"),
    ],
)
def test_bad_cli_input_is_a_clear_error(
    data: Path, args: list[str], code: int, message: str
) -> None:
    result = CliRunner().invoke(cli, [args[0], "--data", str(data), *args[1:]])
    assert result.exit_code == code
    assert message in result.stderr + result.stdout


def test_inspect_of_a_missing_directory(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["inspect", "--data", str(tmp_path / "nope"), "docs"])
    assert result.exit_code == 1
    assert "no edgestate store" in result.stderr


@pytest.fixture
def held(data: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process holding the directory open for writing, as a running node does."""
    code = (
        "import sys\nfrom edgestate.store import Store\n"
        f"s = Store.open({str(data)!r})\ns.set('sessions', 'live', b'from-writer')\n"
        "print('ready', flush=True)\nsys.stdin.read()\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    yield proc
    assert proc.stdin is not None
    proc.stdin.close()
    proc.wait(timeout=30)
    proc.stdout.close()


def test_inspect_reads_while_another_process_writes(data: Path, held: object) -> None:
    assert run("inspect", "--data", str(data), "get", "sessions", "live").strip() == "from-writer"


def test_kv_write_is_refused_while_another_process_writes(data: Path, held: object) -> None:
    result = CliRunner().invoke(cli, ["kv", "--data", str(data), "put", "sessions", "k", "v"])
    assert result.exit_code == 1
    assert "store_locked" in result.stderr


def test_kv_import_json_lines_with_progress(data: Path, tmp_path: Path) -> None:
    lines = [json.dumps({"key": f"imp:{i}", "value": f"v{i}"}) for i in range(2500)]
    lines += [
        json.dumps({"key": "imp:bin", "base64": "AAH/"}),
        "",
        json.dumps({"key": "hits", "incr": 8}),
        json.dumps({"key": "imp:0", "delete": True}),
    ]
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(lines) + "\n")
    out = json.loads(
        run(
            "kv",
            "--data",
            str(data),
            "import",
            "sessions",
            str(src),
            "--batch-size",
            "1000",
            "--json",
        )
    )
    assert out["written"] == 2503
    with Store.open(data, readonly=True) as s:
        assert s.get("sessions", "imp:2499") == b"v2499"
        assert s.get("sessions", "imp:0") is None
        assert s.get("sessions", "imp:bin") == b"\x00\x01\xff"
        assert s.get_counter("sessions", "hits") == 8


def test_kv_import_names_the_bad_line(data: Path, tmp_path: Path) -> None:
    src = tmp_path / "bad.jsonl"
    src.write_text('{"key": "ok", "value": "1"}\n{"key": 5}\n')
    result = CliRunner().invoke(cli, ["kv", "--data", str(data), "import", "sessions", str(src)])
    assert result.exit_code == 2 and "line 2" in result.stderr
    with Store.open(data, readonly=True) as s:
        assert s.get("sessions", "ok") is None  # the batch holding the bad line was not written
