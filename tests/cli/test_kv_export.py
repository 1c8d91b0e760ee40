"""`kv export` / `kv import`: every value type round-trips between two nodes."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from click.testing import CliRunner

from edgestate.cli.main import cli
from edgestate.store import Delete, Incr, Set
from tests.node.conftest import start_node
from tests.schemas import validator

# Every kind of value: text (also non-ASCII, empty, JSON-looking), bytes that are
# not UTF-8, counters (negative, zero, int64 edges), awkward keys.
VALUES: dict[str, bytes] = {
    "greeting": "héllo wörld ✓".encode(),
    "empty": b"",
    "json": b'{"nested": [1, {"a": null}]}',
    "lines": b"one\ntwo\r\n\ttab",
    "blob": bytes(range(256)),
    "nul": b"\x00",
    "key with spaces/and\\slashes": b"v",
    "ключ": "значение".encode(),
}
COUNTERS = {"visits": 42, "debt": -17, "zero": 0, "big": 2**63 - 1, "small": -(2**63)}


def run(*args: str, code: int = 0) -> tuple[str, str]:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == code, (result.stdout, result.stderr)
    return result.stdout, result.stderr


def test_an_export_imports_into_another_node_with_every_type_intact(tmp_path: Path) -> None:
    a = start_node(tmp_path / "a", "--no-mdns", "--workers", "0")
    b = start_node(tmp_path / "b", "--no-mdns", "--workers", "0")
    try:
        ops = [Set("app", k, v) for k, v in VALUES.items()]
        ops += [Incr("app", k, n) for k, n in COUNTERS.items()]
        ops += [Set("app", "gone", b"x"), Delete("app", "gone")]
        a.client.batch("app", ops, create=True)
        dump = tmp_path / "app.jsonl"
        _, err = run("kv", "--data", str(a.data), "export", "app", "--out", str(dump))
        assert err == f"exported {len(VALUES) + len(COUNTERS)} keys of app\n"
        lines = [json.loads(line) for line in dump.read_text(encoding="utf-8").splitlines()]
        assert lines[0] == {"format": "edgestate-kv", "version": 1, "doc": "app"}
        check = validator("cli/kv-lines.schema.json")
        for line in lines:
            check.validate(line)
        assert [line["key"] for line in lines[1:]] == sorted(
            [*VALUES, *COUNTERS], key=lambda k: k.encode()
        )
        # the same bytes on stdout as in --out
        out, _ = run("kv", "--data", str(a.data), "export", "app")
        assert out == dump.read_text(encoding="utf-8")

        for _ in range(2):  # twice: counter lines set totals, they do not add up
            out, _ = run("kv", "--data", str(b.data), "import", "app", str(dump), "--create")
        got = b.client.scan("app", "", None, 1000)
        assert got["cursor"] is None
        items = {item["key"]: item for item in got["items"]}
        assert set(items) == set(VALUES) | set(COUNTERS)
        for key, value in VALUES.items():
            assert items[key]["type"] == "bytes"
            assert base64.b64decode(items[key]["base64"]) == value
        for key, total in COUNTERS.items():
            assert (items[key]["type"], items[key]["counter"]) == ("counter", total)
        # an export of the copy is the same export
        again, _ = run("kv", "--data", str(b.data), "export", "app")
        assert again == dump.read_text(encoding="utf-8")
    finally:
        a.stop()
        b.stop()


def test_an_export_of_a_newer_format_or_a_bad_line_is_refused(tmp_path: Path) -> None:
    data = str(tmp_path / "store")
    newer = tmp_path / "newer.jsonl"
    newer.write_text(
        '{"format": "edgestate-kv", "version": 2, "doc": "x"}\n{"key": "k", "value": "v"}\n'
    )
    _, err = run("kv", "--data", data, "import", "x", str(newer), "--create", code=2)
    assert "line 1: export format version 2; this edgestate reads 1" in err
    both = tmp_path / "both.jsonl"
    both.write_text('{"key": "k", "value": "v", "counter": 1}\n')
    _, err = run("kv", "--data", data, "import", "x", str(both), "--create", code=2)
    assert "line 1: give exactly one of" in err and "(got value, counter)" in err
    number = tmp_path / "number.jsonl"
    number.write_text('{"key": "k", "value": 5}\n')
    _, err = run("kv", "--data", data, "import", "x", str(number), "--create", code=2)
    assert '"value" must be a string' in err
    run("kv", "--data", data, "get", "x", "k", code=1)  # nothing was written: no document
