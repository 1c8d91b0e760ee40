"""Everyday mistakes end in a named error, never a traceback or a silent success.

Each case runs the real thing: `edgestate node` subprocesses on 127.0.0.1 (a port
made busy by a socket bound first, a --data under a file), the CLI in-process
against a running node, the node's HTTP API. Waits are on conditions, bounded.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgestate.cli.main import cli
from tests.node.api_check import call
from tests.node.conftest import NodeProcess, eventually, start_node
from tests.schemas import validate

REPO = Path(__file__).resolve().parents[2]
# A node that fails at start does so within a second or two; this is the bound.
START_FAILURE_TIMEOUT_S = 60
# Not a replica id of any node here: those are random 52-bit odd numbers.
UNKNOWN_REPLICA = 4242


def run_node(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``edgestate node ARGS`` in a subprocess that is expected to exit on its own."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), *sys.path])}
    return subprocess.run(
        [sys.executable, "-m", "edgestate.cli.main", "node", "--no-mdns", *args],
        capture_output=True,
        text=True,
        timeout=START_FAILURE_TIMEOUT_S,
        cwd=cwd,
        env=env,
    )


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port of 127.0.0.1 some other program listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    n = start_node(tmp_path_factory.mktemp("everyday") / "data", "--no-mdns")
    yield n
    assert n.stop() == 0, n.log()


# --- start-up -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flag", "other", "listener"),
    [("--api-port", "--sync-port", "API"), ("--sync-port", "--api-port", "sync")],
)
def test_a_port_in_use_is_named_with_its_listener(
    tmp_path: Path, busy_port: int, flag: str, other: str, listener: str
) -> None:
    r = run_node("--data", str(tmp_path / "data"), flag, str(busy_port), other, "0", cwd=tmp_path)
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    assert (
        f"error: listen_failed: cannot listen for {listener} on 127.0.0.1:{busy_port}: "
        "the port is already in use"
    ) in r.stderr
    assert flag in r.stderr.splitlines()[-1]  # and says how to choose another


@pytest.mark.parametrize(
    ("where", "says"),
    [
        ("under-a-file", "a parent of it is a file"),
        ("is-a-file", "is a file, not a directory"),
        ("unwritable", "cannot create data directory"),
    ],
)
def test_an_unusable_data_directory_is_named(tmp_path: Path, where: str, says: str) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("not a directory\n")
    data = {
        "under-a-file": blocker / "data",
        # Through the config file: --data itself refuses a file (click's check).
        "is-a-file": blocker,
        # The tests may run as root, who can write anywhere on a normal file system.
        "unwritable": Path("/proc/edgestate-test-data"),
    }[where]
    if where == "is-a-file":
        config = tmp_path / "node.toml"
        config.write_text(f"data_dir = {json.dumps(str(data))}\n")
        args = ["--config", str(config)]
    else:
        args = ["--data", str(data)]
    r = run_node(*args, "--api-port", "0", "--sync-port", "0", cwd=tmp_path)
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("error: data_dir: ") and str(data) in last and says in last, last
    assert blocker.read_text() == "not a directory\n"


@pytest.mark.parametrize(
    ("peer", "says"),
    [
        ("notahostport", "the port is missing"),
        ("node.lan:0", "not in 1-65535"),
        ("node.lan:65536", "not in 1-65535"),
        ("node.lan:http", "'http' is not a number"),
        (":7475", "the host is missing"),
        ("http://node.lan:7475", "not a URL"),
        ("a b:7475", "not a host name"),
        ("::1:7475", "[ADDRESS]:PORT"),
        ("[nonsense]:7475", "no IPv6 address"),
    ],
)
def test_a_peer_must_be_host_colon_port(tmp_path: Path, peer: str, says: str) -> None:
    # --data names a file, which click refuses too, but only after --peer (click
    # checks options in the order given): without the --peer check this still
    # ends at once, on --data, instead of starting a node.
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    r = CliRunner().invoke(cli, ["node", "--peer", peer, "--data", str(blocker), "--no-mdns"])
    assert r.exit_code == 2, r.output
    assert "Invalid value for '--peer'" in r.stderr and says in r.stderr, r.stderr
    assert "--data" not in r.stderr


def test_a_static_peer_in_the_config_file_follows_the_same_rule(tmp_path: Path) -> None:
    config = tmp_path / "node.toml"
    config.write_text('[sync]\nstatic_peers = ["127.0.0.1:1", "notahostport"]\n')
    r = run_node("--config", str(config), "--data", str(tmp_path / "data"), cwd=tmp_path)
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("error: config_error: ") and "'notahostport'" in last, last
    assert "the port is missing" in last


def test_good_peer_addresses_pass_the_check(tmp_path: Path) -> None:
    from edgestate.cli.options import HostPort

    for peer in ("127.0.0.1:1", "node-1.lan:65535", "[::1]:7475", "edge_2:80"):
        assert HostPort().convert(peer, None, None) == peer


# --- dial failures ---------------------------------------------------------------------


def test_an_unreachable_peer_warns_once_and_shows_its_error(tmp_path: Path) -> None:
    # Bound but not listening: every dial is refused at once, and no other
    # program can take the port while the test runs.
    with socket.socket() as dead:
        dead.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{dead.getsockname()[1]}"
        n = start_node(tmp_path / "data", "--no-mdns", "--peer", address)
        try:

            def failed_often() -> dict[str, object] | None:
                rows = call(n.api, "GET", "/v1/admin/peers", token=n.token).json()["peers"]
                row = next((r for r in rows if r["address"] == address), None)
                return row if row is not None and row["failures"] >= 4 else None

            row = eventually(failed_often, what="four failed dials")
            table = CliRunner().invoke(cli, ["peers", "--node", n.api, "--token", n.token])
            as_json = CliRunner().invoke(
                cli, ["peers", "--node", n.api, "--token", n.token, "--json"]
            )
        finally:
            assert n.stop() == 0, n.log()
    lines = [line for line in n.log().splitlines() if f"cannot reach sync peer {address}" in line]
    # One warning for the streak, not one per retry (the rest are debug, not shown).
    assert len(lines) == 1, lines
    assert "WARNING" in lines[0] and "Connect" in lines[0], lines[0]
    assert table.exit_code == 0, table.output
    header, _, *rows = table.stdout.splitlines()
    assert header.split()[-3:] == ["FAILS", "LAST", "ERROR"], header
    (mine,) = [r for r in rows if address in r]
    assert str(row["last_error"]) in mine
    out = json.loads(as_json.stdout)
    validate("cli/peers.schema.json", out)
    (peer,) = [p for p in out["peers"] if p["address"] == address]
    assert peer["last_error"] and "Connect" in peer["last_error"]


def test_failure_log_warns_at_the_start_of_each_streak_only() -> None:
    from edgestate.sync.websocket import FailureLog

    failures = FailureLog(interval_s=3600)
    assert [failures.failed() for _ in range(5)] == [logging.WARNING] + [logging.DEBUG] * 4
    assert failures.streak == 5
    failures.succeeded()
    assert failures.streak == 0
    assert failures.failed() == logging.WARNING  # a new streak is said again
    # With no interval every failure is a reminder.
    always = FailureLog(interval_s=0)
    assert {always.failed() for _ in range(3)} == {logging.WARNING}


# --- the token ---------------------------------------------------------------------


def test_an_explicit_token_beats_the_environment(node: NodeProcess, tmp_path: Path) -> None:
    token_file = node.data / "admin.token"
    wrong = {"EDGESTATE_TOKEN": "not-this-nodes-token-at-all"}
    runner = CliRunner()
    by_file = runner.invoke(
        cli, ["status", "--node", node.api, "--token-file", str(token_file)], env=wrong
    )
    assert by_file.exit_code == 0, by_file.output
    by_option = runner.invoke(cli, ["status", "--node", node.api, "--token", node.token], env=wrong)
    assert by_option.exit_code == 0, by_option.output
    # Without either option the environment is used: the wrong one is refused...
    by_env = runner.invoke(cli, ["status", "--node", node.api], env=wrong)
    assert by_env.exit_code == 1 and "error: forbidden:" in by_env.stderr, by_env.output
    # ...the right one accepted.
    ok_env = runner.invoke(cli, ["status", "--node", node.api], env={"EDGESTATE_TOKEN": node.token})
    assert ok_env.exit_code == 0, ok_env.output
    both = runner.invoke(
        cli,
        ["status", "--node", node.api, "--token", node.token, "--token-file", str(token_file)],
    )
    assert both.exit_code == 2 and "not both" in both.stderr, both.output
    empty = tmp_path / "empty.token"
    empty.write_text("\n")
    blank = runner.invoke(cli, ["status", "--node", node.api, "--token-file", str(empty)])
    assert blank.exit_code == 2 and "is empty" in blank.stderr, blank.output


# --- forget ------------------------------------------------------------------------


def test_forgetting_a_replica_that_is_no_member_is_refused(node: NodeProcess) -> None:
    before = call(node.api, "GET", "/v1/admin/members", token=node.token).json()
    reply = call(node.api, "DELETE", f"/v1/admin/members/{UNKNOWN_REPLICA}", token=node.token)
    assert reply.status == 404, reply.body
    error = reply.json()["error"]
    assert error["code"] == "unknown_member"
    assert f"replica {UNKNOWN_REPLICA} is not a cluster member" in error["message"]
    assert str(before["me"]) in error["message"]  # it says who the members are
    r = CliRunner().invoke(
        cli,
        ["forget", str(UNKNOWN_REPLICA + 2), "--yes", "--node", node.api, "--token", node.token],
    )
    assert r.exit_code == 1, r.output
    assert r.stderr.startswith(f"error: unknown_member: replica {UNKNOWN_REPLICA + 2} is not")
    after = call(node.api, "GET", "/v1/admin/members", token=node.token).json()
    assert after == before  # nothing recorded
    assert after["forgotten"] == []


# --- JSON bodies ---------------------------------------------------------------------


@pytest.mark.parametrize("route", ["/v1/admin/docs/app/batch?create=true", "/v1/admin/modules"])
@pytest.mark.parametrize(
    ("body", "says", "code"),
    [
        (b"[" * 100_000, "nests deeper than 32 levels", "bad_request"),
        (b'{"ops": ' + b"[" * 40 + b"]" * 40 + b"}", "nests deeper than 32 levels", "bad_request"),
        (b'{"ops": [1e999]}', "out of range", "non_finite_json_number"),
        (b'{"ops": [NaN]}', "holds NaN, which is not a JSON number", "non_finite_json_number"),
        (b'{"ops": [' + b"9" * 5000 + b"]}", "out of range", "bad_request"),
        (b'{"ops": "\xff"}', "not UTF-8", "bad_request"),
        (b"", "is empty", "bad_request"),
        (b'["ops"]', "must be a JSON object, got an array", "bad_request"),
        (b"{", "is not valid JSON", "bad_request"),
        (b'{"ops": [], "ops": [1]}', "repeats the key 'ops'", "duplicate_json_key"),
    ],
)
def test_bad_json_bodies_get_a_json_400(
    node: NodeProcess, route: str, body: bytes, says: str, code: str
) -> None:
    path, _, query = route.partition("?")
    reply = call(
        node.api,
        "POST",
        path,
        body,
        token=node.token,
        query=dict([query.split("=")]) if query else None,
        validate=False,  # the spec describes valid request bodies only
    )
    assert reply.status == 400, reply.body
    assert reply.headers["Content-Type"].startswith("application/json")
    error = reply.json()["error"]
    assert error["code"] == code and says in error["message"], error
    assert call(node.api, "GET", "/healthz").status == 200


def test_the_depth_bound_is_exact() -> None:
    from edgestate.errors import BadRequestError
    from edgestate.node.api.body import MAX_JSON_DEPTH, parse_json_object

    def nested(levels: int) -> bytes:  # an object holding lists: ``levels`` in all
        inner = "[" * (levels - 1) + "]" * (levels - 1)
        return ('{"a": ' + inner + "}").encode()

    assert parse_json_object(nested(MAX_JSON_DEPTH), "body") == {
        "a": nested_list(MAX_JSON_DEPTH - 1)
    }
    with pytest.raises(BadRequestError, match=f"nests deeper than {MAX_JSON_DEPTH} levels"):
        parse_json_object(nested(MAX_JSON_DEPTH + 1), "body")


def nested_list(levels: int) -> object:
    value: list[object] = []
    for _ in range(levels - 1):
        value = [value]
    return value
