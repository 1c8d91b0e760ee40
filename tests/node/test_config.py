"""Node configuration: the TOML schema and the code agree; bad values are named."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgestate.cli.main import cli
from edgestate.errors import ConfigError
from edgestate.node.config import config_keys, load_config
from edgestate.store import Durability, GcMode
from tests.schemas import validator

SCHEMA = Path(__file__).resolve().parents[2] / "schemas" / "config.schema.json"

FULL = """
data_dir = "d"
log_format = "json"
log_level = "debug"
[api]
host = "127.0.0.1"
port = 8080
max_body_bytes = 1000
[store]
durability = "batched"
batched_flush_ms = 20
gc = "off"
[runtime]
cache_dir = "cc"
[sync]
port = 9000
static_peers = ["127.0.0.1:9001"]
local_only = ["secrets"]
mdns = false
gc_grace_s = 120
"""


def test_schema_and_code_accept_the_same_keys() -> None:
    schema = json.loads(SCHEMA.read_text())
    from_schema = {"": set(schema["properties"]) - {"api", "store", "runtime", "sync"}}
    for section in ("api", "store", "runtime", "sync"):
        from_schema[section] = set(schema["properties"][section]["properties"])
    assert from_schema == config_keys()


def test_full_example_is_valid_and_loads(tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_text(FULL)
    validator("config.schema.json").validate(tomllib.loads(FULL))
    cfg = load_config(path)
    assert cfg.data_dir == tmp_path / "d"
    assert cfg.api.port == 8080 and cfg.api.max_body_bytes == 1000
    assert cfg.store.durability is Durability.BATCHED
    assert cfg.store.gc is GcMode.OFF and cfg.sync.gc_grace_s == 120
    assert cfg.runtime.cache_dir == tmp_path / "d" / "cc"
    assert cfg.sync.static_peers == ("127.0.0.1:9001",)
    assert cfg.sync.local_only == frozenset({"secrets"})
    assert cfg.sync.insecure is True and cfg.sync.mdns is False
    assert cfg.log_format == "json"


def test_defaults_listen_on_loopback_only() -> None:
    cfg = load_config(None)
    assert cfg.api.host == "127.0.0.1"
    assert cfg.sync.host == "127.0.0.1"


def test_overrides_win_over_the_file(tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_text(FULL)
    cfg = load_config(path, {"api.port": 0, "sync.mdns": None})
    assert cfg.api.port == 0 and cfg.sync.mdns is False


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[api]\nprot = 1\n", "unknown setting 'api.prot'"),
        ("[api]\nport = 'x'\n", "api.port must be an integer"),
        ("[store]\ndurability = 'sometimes'\n", "store.durability must be 'sync' or 'batched'"),
        ("[store]\ngc = 'eager'\n", "store.gc must be 'cluster', 'solo' or 'off'"),
        ("log_format = 'xml'\n", "log_format must be 'text' or 'json'"),
        ("[sync]\ninsecure = false\n", "needs sync.ca_cert"),
        ("[sync]\ncert = 'a'\n", "missing ['ca_cert', 'key']"),
        ("[api]\nport = true\n", "got a boolean"),
        ("api = 3\n", "[api] must be a table"),
        ("this is not toml", "not valid TOML"),
    ],
)
def test_bad_config_names_what_is_wrong(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "node.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert message in str(info.value)


def test_node_command_reports_bad_config_and_exits_1(tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_text("[api]\nprot = 1\n")
    result = CliRunner().invoke(cli, ["node", "--config", str(path)])
    assert result.exit_code == 1
    assert "config_error" in result.stderr and "api.prot" in result.stderr
    missing = CliRunner().invoke(cli, ["node", "--config", str(tmp_path / "nope.toml")])
    assert missing.exit_code == 1 and "does not exist" in missing.stderr


@pytest.mark.parametrize(
    ("file", "content", "message"),
    [
        ("trust-policy.json", "{not json", "trust policy"),
        ("trust-policy.json", '{"version": 1, "publishers": [{"name": "x"}]}', "trust policy"),
        ("admin.token", "", "admin token"),
        ("cache.key", "short", "32-byte key"),
    ],
)
def test_node_refuses_corrupt_files_in_its_data_dir(
    tmp_path: Path, file: str, content: str, message: str
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / file).write_text(content)
    result = CliRunner().invoke(
        cli, ["node", "--data", str(data), "--api-port", "0", "--sync-port", "0", "--no-mdns"]
    )
    assert result.exit_code == 1, result.output
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_command_line_paths_are_relative_to_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conf_dir = tmp_path / "etc"
    conf_dir.mkdir()
    (conf_dir / "node.toml").write_text('data_dir = "from-file"\n')
    monkeypatch.chdir(tmp_path)
    assert load_config(conf_dir / "node.toml").data_dir == conf_dir / "from-file"
    cfg = load_config(conf_dir / "node.toml", {"data_dir": "from-cli"})
    assert cfg.data_dir == tmp_path / "from-cli"
