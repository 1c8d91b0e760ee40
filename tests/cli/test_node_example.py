"""docs/node.example.toml: it parses, shows every key of the schema, and its values are taken."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

from edgestate.node.config import load_config

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "docs" / "node.example.toml"
SETTING = re.compile(r"^# ([a-z_]+ = .*?)(  # an example: no default)?$")


def _schema_keys() -> set[str]:
    schema = json.loads((ROOT / "schemas" / "config.schema.json").read_text())
    out: set[str] = set()

    def walk(props: dict[str, dict[str, object]], prefix: str) -> None:
        for key, spec in props.items():
            if spec.get("type") == "object":
                walk(spec["properties"], f"{prefix}{key}.")  # type: ignore[arg-type]
            else:
                out.add(prefix + key)

    walk(schema["properties"], "")
    return out


def _uncommented() -> str:
    return "\n".join(
        m.group(1) if (m := SETTING.match(line)) else line
        for line in EXAMPLE.read_text().splitlines()
    )


def _flatten(table: dict[str, object], prefix: str = "") -> set[str]:
    keys: set[str] = set()
    for key, value in table.items():
        if isinstance(value, dict):
            keys |= _flatten(value, f"{prefix}{key}.")
        else:
            keys.add(prefix + key)
    return keys


def test_the_example_parses_as_it_is() -> None:
    assert tomllib.loads(EXAMPLE.read_text()) is not None
    # as shipped it sets nothing: every line is a commented default
    assert _flatten(tomllib.loads(EXAMPLE.read_text())) == set()


def test_every_schema_key_is_shown_once_in_its_section() -> None:
    shown = tomllib.loads(_uncommented())  # a key in the wrong section or twice fails here
    assert _flatten(shown) == _schema_keys()


def test_every_value_shown_is_accepted(tmp_path: Path) -> None:
    config = tmp_path / "node.toml"
    # NATS takes one way to log in: the example shows each, uncommented all at once
    # they would be refused as mutually exclusive (so keep the first, creds_file).
    text = "\n".join(
        line
        for line in _uncommented().splitlines()
        if not line.startswith(("nkey_seed_file =", "user =", "password_file =", "token_file ="))
    )
    config.write_text(text)
    loaded = load_config(config, None, {})
    assert loaded.sync.tls is not None and loaded.sync.tls.cert == tmp_path / "tls" / "node.pem"
    assert loaded.api.workers == 2 and loaded.sync.static_peers == (
        "10.0.0.2:7475",
        "[fd00::3]:7475",
    )
