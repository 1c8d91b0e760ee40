"""Configuration from EDGESTATE_* variables, and finding a node from --data alone."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from edgestate.errors import ConfigError
from edgestate.node.config import env_settings, load_config
from tests.node.conftest import start_node

ROOT = Path(__file__).resolve().parents[2]


def _schema_keys() -> dict[str, dict[str, object]]:
    schema = json.loads((ROOT / "schemas" / "config.schema.json").read_text())
    out: dict[str, dict[str, object]] = {}

    def walk(props: dict[str, dict[str, object]], prefix: str) -> None:
        for key, spec in props.items():
            if spec.get("type") == "object":
                walk(spec["properties"], f"{prefix}{key}.")  # type: ignore[arg-type]
            else:
                out[prefix + key] = spec

    walk(schema["properties"], "")
    return out


def test_every_schema_key_has_its_variable_and_a_row_in_the_docs_table() -> None:
    keys = _schema_keys()
    derived = {dotted: var for var, (dotted, _) in env_settings().items()}
    assert set(derived) == set(keys)
    rows = dict(
        re.findall(
            r"^\| `(EDGESTATE_[A-Z0-9_]+)` \| `([a-z0-9_.]+)` \|",
            (ROOT / "docs" / "configuration.md").read_text(),
            re.M,
        )
    )
    assert rows == {var: dotted for dotted, var in derived.items()}
    for dotted, var in derived.items():
        assert var == "EDGESTATE_" + dotted.replace(".", "_").upper()


def test_flag_beats_env_beats_file_beats_default(tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_text("[api]\nport = 1111\nmax_body_bytes = 2222\nshutdown_grace_s = 3\n")
    env = {"EDGESTATE_API_PORT": "5555", "EDGESTATE_API_MAX_BODY_BYTES": "6666"}
    config = load_config(path, {"api.port": 9999}, env)
    assert config.api.port == 9999  # flag
    assert config.api.max_body_bytes == 6666  # env over file
    assert config.api.shutdown_grace_s == 3  # file
    assert config.api.watch_ping_s == 15  # default
    assert load_config(path, None, {}).api.port == 1111


def test_every_kind_of_value_reads_from_text(tmp_path: Path) -> None:
    config = load_config(
        None,
        None,
        {
            "EDGESTATE_SYNC_MDNS": "off",
            "EDGESTATE_SYNC_STATIC_PEERS": "127.0.0.1:1, 127.0.0.1:2",
            "EDGESTATE_STORE_DURABILITY": "batched",
            "EDGESTATE_API_WATCH_PING_S": "2.5",
            "EDGESTATE_DATA_DIR": "rel",
            "EDGESTATE_LOG_FORMAT": "json",
        },
    )
    assert config.sync.mdns is False
    assert config.sync.static_peers == ("127.0.0.1:1", "127.0.0.1:2")
    assert config.store.durability.value == "batched"
    assert config.api.watch_ping_s == 2.5
    assert config.data_dir == Path.cwd() / "rel"  # relative to where it was run, as a flag
    assert config.log_format == "json"


@pytest.mark.parametrize(
    ("variable", "text", "message"),
    [
        ("EDGESTATE_API_PORT", "80a", "EDGESTATE_API_PORT='80a': not an integer"),
        ("EDGESTATE_API_WORKERS", "", "EDGESTATE_API_WORKERS='': not an integer"),
        ("EDGESTATE_SYNC_MDNS", "maybe", "EDGESTATE_SYNC_MDNS='maybe': not a boolean"),
        ("EDGESTATE_API_SHUTDOWN_GRACE_S", "nan", "not a finite number"),
        ("EDGESTATE_STORE_DURABILITY", "fast", "EDGESTATE_STORE_DURABILITY: store.durability"),
        ("EDGESTATE_LOG_LEVEL", "loud", "EDGESTATE_LOG_LEVEL: log_level must be"),
    ],
)
def test_a_bad_value_names_its_variable(variable: str, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, None, {variable: text})
    assert message in str(info.value)


def test_other_variables_are_left_alone_and_a_misspelt_setting_is_named(
    caplog: pytest.LogCaptureFixture,
) -> None:
    env = {"EDGESTATE_TOKEN": "x", "EDGESTATE_FUZZ_SEED": "1", "EDGESTATE_API_PROT": "1"}
    config = load_config(None, None, env)
    assert config.api.port == 7474
    assert "EDGESTATE_API_PROT is not a setting (did you mean EDGESTATE_API_PORT?)" in caplog.text


def _cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("EDGESTATE_")}
    return subprocess.run(
        [sys.executable, "-m", "edgestate.cli.main", *args],
        capture_output=True,
        text=True,
        env={**clean, **(env or {})},
        cwd=cwd,
        timeout=60,
    )


def test_a_node_configured_by_env_is_found_from_its_data_dir(tmp_path: Path) -> None:
    data = tmp_path / "d"
    node = start_node(data, "--no-mdns", env={"EDGESTATE_LOG_FORMAT": "json"})
    try:
        record = json.loads((data / "node.json").read_text())
        assert record["api"] == node.api and record["pid"] == node.proc.pid
        # the env layer reached the node: its log lines are JSON
        first = node.log().splitlines()[0]
        assert json.loads(first)["level"]
        # a write with nothing but --data goes through the node and its token
        put = _cli("kv", "--data", str(data), "put", "app", "k", "v1", "--create")
        assert put.returncode == 0, put.stderr
        assert node.client.get("app", "k")["text"] == "v1"
        status = _cli("status", "--json", "--data", str(data))
        assert status.returncode == 0, status.stderr
        assert json.loads(status.stdout)["api"] == node.api
        # EDGESTATE_DATA_DIR is the same directory for node and CLI
        got = _cli("kv", "get", "app", "k", env={"EDGESTATE_DATA_DIR": str(data)})
        assert got.stdout == "v1\n", got.stderr
        # EDGESTATE_NODE + EDGESTATE_TOKEN from anywhere
        env = {"EDGESTATE_NODE": node.api, "EDGESTATE_TOKEN": node.token}
        got = _cli("kv", "get", "app", "k", env=env, cwd=tmp_path)
        assert got.stdout == "v1\n", got.stderr
        # a wrong exported token loses to the directory's own
        got = _cli("kv", "--data", str(data), "get", "app", "k", env={"EDGESTATE_TOKEN": "nope"})
        assert got.stdout == "v1\n", got.stderr
    finally:
        assert node.stop(signal.SIGTERM) == 0
    assert not (data / "node.json").exists()  # withdrawn on a clean stop


def test_admin_command_on_a_data_dir_without_a_running_node_says_so(tmp_path: Path) -> None:
    data = tmp_path / "idle"
    data.mkdir()
    # a record left behind by a node that is gone (kill -9) is not trusted
    (data / "node.json").write_text(json.dumps({"api": "http://127.0.0.1:9", "pid": 2**22 + 7}))
    out = _cli("status", "--data", str(data))
    assert out.returncode == 1
    assert out.stdout == ""
    assert f"no node is running on {data}" in out.stderr
    assert out.stderr.startswith("error: unreachable: ")


def test_stop_without_a_running_node_says_so(tmp_path: Path) -> None:
    out = _cli("stop", "--data", str(tmp_path))
    assert out.returncode == 1 and out.stdout == ""
    assert out.stderr.startswith(f"error: unreachable: no node is running on {tmp_path}")


def test_a_node_refuses_a_bad_variable_by_name(tmp_path: Path) -> None:
    out = _cli(
        "node",
        "--data",
        str(tmp_path / "d"),
        "--no-mdns",
        env={"EDGESTATE_API_WORKERS": "lots"},
    )
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines()[-1] == (
        "error: config_error: environment variable EDGESTATE_API_WORKERS='lots': not an integer"
    )
    assert not (tmp_path / "d").exists()  # refused before anything was written
