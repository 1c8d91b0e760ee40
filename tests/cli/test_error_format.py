"""One error format on every command, JSON errors under --json, the exit statuses."""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from edgestate.cli.main import cli
from tests.node.conftest import eventually, start_node
from tests.schemas import validate


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_a_usage_error_is_in_the_one_format_with_a_hint() -> None:
    code, out, err = run("kv", "get", "onlydoc")
    assert code == 2 and out == ""
    lines = err.splitlines()
    assert lines[0] == "error: usage: Missing argument 'KEY'.", err
    assert lines[1] == "hint: see `edgestate kv get --help`"
    assert "Error:" not in err and "Usage:" not in err
    code, _, err = run("no-such-command")
    assert code == 2 and err.startswith("error: usage: No such command 'no-such-command'.")


def test_a_usage_error_under_json_is_json_on_stdout() -> None:
    code, out, err = run("status", "--json", "--bogus")
    assert code == 2 and err == ""
    validate("cli/error.schema.json", json.loads(out))
    error = json.loads(out)["error"]
    assert error["code"] == "usage" and "--bogus" in error["message"]
    assert error["hint"] == "see `edgestate status --help`"


def test_sign_reports_library_errors_in_the_one_format(tmp_path: Path) -> None:
    assert run("keygen", "--out", str(tmp_path / "me"))[0] == 0
    source = tmp_path / "mod.wasm"
    source.write_text("const x = 1;")  # source, not a wasm binary
    (tmp_path / "mod.manifest.json").write_text("{}")
    code, out, err = run("sign", str(source), "--key", str(tmp_path / "me.key"))
    assert code == 1 and out == ""
    first = err.splitlines()[0]
    # once `Error: [invalid_manifest] ...` (click's form); now the one format
    assert re.match(r"error: [a-z_]+: ", first), err
    assert "Error:" not in err and "[" not in first.split(":")[1]
    code, out, err = run("sign", str(source), "--key", str(tmp_path / "me.key"), "--json")
    assert code == 1 and err == ""
    validate("cli/error.schema.json", json.loads(out))


def test_an_unreachable_node_gets_a_hint_and_json(tmp_path: Path) -> None:
    code, out, err = run("status", "--node", "http://127.0.0.1:1", "--token", "x")
    assert code == 1 and out == ""
    assert err.startswith("error: unreachable: cannot reach a node at http://127.0.0.1:1")
    assert "hint: is the node running?" in err
    code, out, err = run("status", "--json", "--node", "http://127.0.0.1:1", "--token", "x")
    assert code == 1 and err == ""
    validate("cli/error.schema.json", json.loads(out))
    assert json.loads(out)["error"]["code"] == "unreachable"


def test_absent_keys_exit_3_with_nothing_on_stdout(tmp_path: Path) -> None:
    data = str(tmp_path / "store")
    assert run("kv", "--data", data, "put", "app", "here", "v", "--create")[0] == 0
    code, out, err = run("kv", "--data", data, "get", "app", "gone")
    assert (code, out) == (3, "")
    assert err == "error: not_found: no key 'gone' in 'app'\n"
    code, out, _ = run("kv", "--data", data, "get", "app", "gone", "--json")
    assert code == 3 and json.loads(out)["found"] is False  # the value schema's answer
    code, out, err = run("kv", "--data", data, "delete", "app", "gone")
    assert (code, out) == (3, "")
    assert err == "error: not_found: no key 'gone' in 'app': nothing deleted\n"
    code, out, _ = run("kv", "--data", data, "delete", "app", "gone", "--json")
    assert code == 3 and json.loads(out)["error"]["code"] == "not_found"
    validate("cli/error.schema.json", json.loads(out))
    code, out, _ = run("kv", "--data", data, "delete", "app", "here")
    assert (code, out) == (0, "ok: deleted app/here\n")


def test_watch_ends_quietly_on_ctrl_c(tmp_path: Path) -> None:
    node = start_node(tmp_path / "n", "--no-mdns")
    watcher = None
    try:
        node.client.put("w", "k", b"1", create=True)
        # a node's own error answer, in the same format, found from --data alone
        code, out, err = run("call", "nope", "--data", str(node.data), "--input", "x")
        assert (code, out) == (1, "")
        assert err.startswith("error: unknown_module: "), err
        env = {k: v for k, v in os.environ.items() if not k.startswith("EDGESTATE_")}
        watcher = subprocess.Popen(
            [sys.executable, "-m", "edgestate.cli.main", "watch", "w", "--data", str(node.data)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        # Once a change printed, the watch is surely running (not still importing):
        # write until one shows, bounded.
        assert watcher.stdout is not None
        line = b""
        for attempt in range(100):
            node.client.put("w", "k", str(attempt).encode())
            ready, _, _ = select.select([watcher.stdout], [], [], 0.2)
            if ready:
                line = watcher.stdout.readline()
                break
        assert b"w/k = " in line, line
        watcher.send_signal(signal.SIGINT)
        code = watcher.wait(timeout=20)
        assert watcher.stderr is not None
        err = watcher.stderr.read().decode()
        assert code == 130, err
        # click ends the ^C line with a newline; no traceback, no "Aborted!"
        assert err.strip() == "", err
    finally:
        if watcher is not None:
            if watcher.poll() is None:
                watcher.kill()
                watcher.wait(timeout=10)
            for pipe in (watcher.stdout, watcher.stderr):
                if pipe is not None:
                    pipe.close()
        node.stop()
    eventually(lambda: not (node.data / "node.json").exists(), what="node.json removed")
