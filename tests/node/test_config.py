"""Node configuration: the TOML schema and the code agree; bad values are named."""

from __future__ import annotations

import dataclasses
import enum
import json
import tomllib
import types
import typing
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from click.testing import CliRunner

from edgestate.cli.main import cli
from edgestate.errors import ConfigError
from edgestate.node.config import NodeConfig, config_keys, config_settings, load_config
from edgestate.runtime import RuntimeConfig
from edgestate.store import Durability, GcMode, StoreConfig
from edgestate.sync.config import SyncConfig
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


def _schema_sections(node: dict[str, Any], name: str = "") -> dict[str, dict[str, Any]]:
    """Section -> key -> property schema; objects with properties are sections."""
    out: dict[str, dict[str, Any]] = {name: {}}
    for key, prop in node["properties"].items():
        if prop.get("type") == "object" and "properties" in prop:
            out.update(_schema_sections(prop, f"{name}.{key}" if name else key))
        else:
            out[name][key] = prop
    return out


def test_schema_and_code_accept_the_same_keys() -> None:
    from_schema = _schema_sections(json.loads(SCHEMA.read_text()))
    assert {s: set(keys) for s, keys in from_schema.items()} == config_keys()


# The JSON-Schema form of each kind of derived setting.
_JSON_TYPE = {
    "str": "string",
    "path": "string",
    "int": "integer",
    "float": "number",
    "bool": "boolean",
    "strings": "array",
}


def test_schema_and_dataclasses_agree_on_types() -> None:
    from_schema = _schema_sections(json.loads(SCHEMA.read_text()))
    for section, settings in config_settings().items():
        for key, setting in settings.items():
            if setting.kind == "table":
                continue
            prop, where = from_schema[section][key], f"{section}.{key}"
            if setting.kind == "enum":
                assert prop["enum"] == [m.value for m in setting.type], where
            elif "enum" in prop:  # a string the node checks against a fixed set
                assert setting.kind == "str", where
                assert all(isinstance(v, str) for v in prop["enum"]), where
            else:
                assert prop["type"] == _JSON_TYPE[setting.kind], where


def _hints(cls: type) -> dict[str, Any]:
    # NodeConfig names the layers' configs only under TYPE_CHECKING (a light import).
    layers = {"StoreConfig": StoreConfig, "RuntimeConfig": RuntimeConfig, "SyncConfig": SyncConfig}
    return typing.get_type_hints(cls, localns=layers)


def _config_dataclasses() -> dict[str, type]:
    """Section -> the dataclass it maps onto, walked from NodeConfig independently
    of edgestate.node.config's own derivation."""
    out: dict[str, type] = {}

    def walk(section: str, cls: type) -> None:
        out[section] = cls
        for name, hint in _hints(cls).items():
            hint = _unoptional(hint)
            if dataclasses.is_dataclass(hint) and name != "tls":
                walk(f"{section}.{name}" if section else name, hint)  # type: ignore[arg-type]

    walk("", NodeConfig)
    return out


def _unoptional(hint: Any) -> Any:
    """``X`` of ``X | None`` (an optional section such as sync.nats)."""
    if typing.get_origin(hint) in (types.UnionType, typing.Union):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return hint


# Fields a config file deliberately does not set (see _NOT_SETTINGS in the module),
# and NATS credentials exclusive with the user + password_file this test sets.
_NOT_FROM_FILE = {
    ("runtime", "cache_key"),
    ("sync.nats", "creds_file"),
    ("sync.nats", "token_file"),
    ("sync.nats", "nkey_seed_file"),
}


def _other_value(hint: Any, default: Any) -> tuple[Any, Any]:
    """(TOML value, expected field value) different from ``default``, for one field type."""
    if typing.get_origin(hint) in (types.UnionType, typing.Union):
        (hint,) = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) is tuple:
        return ["127.0.0.1:9001"], ("127.0.0.1:9001",)
    if typing.get_origin(hint) is frozenset:
        return ["secret-doc"], frozenset({"secret-doc"})
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        member = next(m for m in hint if m != default)
        return member.value, member
    if hint is bool:
        return (not default), (not default)
    if hint is int:
        return default + 3, default + 3
    if hint is float:
        return default + 0.5, default + 0.5
    if hint is Path:
        return "set-by-file", Path  # checked by name: the base directory varies
    assert hint is str, hint
    return f"{default or 'v'}-x", f"{default or 'v'}-x"


def test_every_dataclass_field_is_settable_from_the_file(tmp_path: Path) -> None:
    doc: dict[str, Any] = {}
    expected: dict[tuple[str, str], Any] = {}
    # Values the node checks against a fixed set, or that must agree with each other.
    fixed = {
        ("", "log_format"): "json",
        ("", "log_level"): "debug",
        ("sync", "insecure"): False,  # TLS files are set below
        ("api", "tls"): True,  # needs them too
        ("api", "event_loop"): "uvloop",
        ("sync", "node_id"): "node-7",
        ("sync.nats", "servers"): ["nats://127.0.0.1:4222"],
    }
    defaults = load_config(None)
    for section, cls in _config_dataclasses().items():
        table = doc
        default_obj: Any = defaults
        for part in section.split(".") if section else []:
            table = table.setdefault(part, {})
            default_obj = getattr(default_obj, part)
        for f in dataclasses.fields(cls):
            hint = _hints(cls)[f.name]
            sub_section = dataclasses.is_dataclass(_unoptional(hint)) and f.name != "tls"
            if (section, f.name) in _NOT_FROM_FILE or sub_section:
                continue
            if section == "sync" and f.name == "tls":
                for tls_key in ("ca_cert", "cert", "key", "crl"):
                    table[tls_key] = f"tls/{tls_key}.pem"
                    expected[("sync.tls", tls_key)] = Path
                continue
            if (section, f.name) in fixed:
                value = fixed[(section, f.name)]
                want = tuple(value) if isinstance(value, list) else value
                table[f.name], expected[(section, f.name)] = value, want
            else:
                # An optional section (sync.nats) is off by default: its fields'
                # defaults are the dataclass's.
                default = f.default if default_obj is None else getattr(default_obj, f.name)
                toml, want = _other_value(hint, default)
                table[f.name], expected[(section, f.name)] = toml, want
    path = tmp_path / "node.toml"
    path.write_text(tomli_w.dumps(doc))
    validator("config.schema.json").validate(doc)
    cfg = load_config(path)
    for (section, name), want in expected.items():
        obj: Any = cfg
        for part in section.split(".") if section else []:
            obj = getattr(obj, part)
        got = getattr(obj, name)
        if want is Path:
            assert isinstance(got, Path) and got.is_absolute(), (section, name, got)
            assert got.name in (f"{name}.pem", "set-by-file"), (section, name, got)
        else:
            assert got == want, (section, name, got, want)
    # The settings the hand-kept table used to miss, by name.
    assert cfg.store.max_group_ops == 4096 + 3 and cfg.sync.coalesce_s == 0.5
    assert cfg.sync.heartbeat_s == 15.5 and cfg.sync.forget_after_s == 300.5
    assert cfg.sync.backoff_initial_s == 0.55 and cfg.sync.backoff_max_s == 10.5
    assert cfg.runtime.host.max_handles == 19 and cfg.sync.limits.peer_queue == 10_003


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[runtime.host]\nmax_handles = 'x'\n", "runtime.host.max_handles must be an integer"),
        ("[sync.limits]\nnope = 1\n", "unknown setting 'sync.limits.nope'"),
        ("[sync]\nlimits = 3\n", "[sync.limits] must be a table"),
        ("[runtime]\ncache_key = 'x'\n", "unknown setting 'runtime.cache_key'"),
        ("[sync]\ntls = 'x'\n", "unknown setting 'sync.tls'"),
    ],
)
def test_sub_tables_are_checked_like_sections(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "node.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert message in str(info.value)


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
        ("[api]\nevent_loop = 'trio'\n", "api.event_loop must be 'auto', 'asyncio' or 'uvloop'"),
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
