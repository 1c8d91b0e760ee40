#!/usr/bin/env python3
"""Write the config reference docs from ``schemas/config.schema.json``.

Two files follow the schema, so they are generated rather than kept by hand (a
hand-kept copy drifted by 22 keys in one afternoon of merges):

- ``docs/node.example.toml``: every key, commented out at its default (or at the
  schema's ``examples`` value where there is no default);
- the "Every variable" table of ``docs/configuration.md``: each key's
  ``EDGESTATE_*`` variable, type and default.

``scripts/config_docs.py`` rewrites both; ``--check`` only compares and exits 1 on
drift (tests/cli/test_config_docs.py runs it).
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = ROOT / "schemas" / "config.schema.json"
EXAMPLE = ROOT / "docs" / "node.example.toml"
CONFIGURATION = ROOT / "docs" / "configuration.md"
TABLE_HEAD = "| variable | key | type | default |\n|---|---|---|---|\n"
WIDTH = 86  # the comment lines of the example file

HEADER = """\
# Every setting of an edgestate node, commented out at its default (or an example
# where there is none). Uncomment what you change. Specified in
# schemas/config.schema.json; unknown keys and wrong types are refused, naming the key.
#
# Precedence: a flag (`edgestate node --api-port`) > an EDGESTATE_* variable
# (EDGESTATE_API_PORT; docs/configuration.md lists them all) > this file > the default.
# Relative paths are relative to this file's directory (runtime.cache_dir: to data_dir).
#
#   edgestate node --config node.toml
#
# Generated from the schema by scripts/config_docs.py (tests check it is current);
# tests/cli/test_node_example.py checks it parses and its values are accepted.
"""


def _sections(
    props: dict[str, Any], name: str = "", description: str | None = None
) -> Iterator[tuple[str, str | None, dict[str, Any]]]:
    """(dotted section, its description, its leaf keys) in schema order, parents first
    (TOML wants a table's own keys before its sub-tables)."""
    yield name, description, {k: v for k, v in props.items() if not _is_section(v)}
    for key, value in props.items():
        if _is_section(value):
            sub = f"{name}.{key}" if name else key
            yield from _sections(value["properties"], sub, value.get("description"))


def _is_section(value: dict[str, Any]) -> bool:
    return value.get("type") == "object" and "properties" in value


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(value)


def _bounds(spec: dict[str, Any]) -> str:
    parts = []
    if "minimum" in spec:
        parts.append(f">= {spec['minimum']}")
    if "exclusiveMinimum" in spec:
        parts.append(f"> {spec['exclusiveMinimum']}")
    if "maximum" in spec:
        parts.append(f"<= {spec['maximum']}")
    if "enum" in spec:
        parts.append("one of " + ", ".join(str(v) for v in spec["enum"]))
    return " and ".join(parts)


def _comment(text: str) -> list[str]:
    lines = textwrap.wrap(text, WIDTH - 2, break_on_hyphens=False, break_long_words=False)
    return [f"# {line}" for line in lines]


def example_toml(schema: dict[str, Any]) -> str:
    """The text of docs/node.example.toml."""
    out = [HEADER]
    for section, description, leaves in _sections(schema["properties"]):
        if section:
            out.append("")
            if description:
                out += _comment(description)
            out.append(f"[{section}]")
        for key, spec in leaves.items():
            out.append("")
            text = spec.get("description", "")
            text = text[:1].upper() + text[1:]
            bounds = _bounds(spec)
            if bounds:
                text = f"{text} ({bounds})" if text else bounds[:1].upper() + bounds[1:]
            if text:
                out += _comment(text)
            if "default" in spec:
                out.append(f"# {key} = {_toml(spec['default'])}")
            else:
                out.append(f"# {key} = {_toml(spec['examples'][0])}  # an example: no default")
        out.append("")
    return "\n".join(out).rstrip("\n") + "\n"


def _type(spec: dict[str, Any]) -> str:
    if "enum" in spec:
        return "one of " + ", ".join(str(v) for v in spec["enum"])
    if spec.get("type") == "array":
        return f"list of {spec.get('items', {}).get('type', 'value')}s"
    return str(spec.get("type", "value"))


def variable_table(schema: dict[str, Any]) -> str:
    """The rows of the "Every variable" table (header included)."""
    rows = [TABLE_HEAD]
    for section, _, leaves in _sections(schema["properties"]):
        for key, spec in leaves.items():
            dotted = f"{section}.{key}" if section else key
            var = "EDGESTATE_" + dotted.replace(".", "_").upper()
            default = f"`{json.dumps(spec['default'])}`" if "default" in spec else ""
            rows.append(f"| `{var}` | `{dotted}` | {_type(spec)} | {default} |\n")
    return "".join(rows)


def configuration_md(current: str, schema: dict[str, Any]) -> str:
    """docs/configuration.md with its variable table replaced."""
    start = current.index(TABLE_HEAD)
    end = current.find("\n\n", start)
    end = len(current) if end == -1 else end + 1
    return current[:start] + variable_table(schema) + current[end:]


def main() -> int:
    """Rewrite (or, with --check, compare) both files."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare only; exit 1 on drift")
    args = parser.parse_args()
    schema = json.loads(SCHEMA.read_text())
    wanted = {
        EXAMPLE: example_toml(schema),
        CONFIGURATION: configuration_md(CONFIGURATION.read_text(), schema),
    }
    stale = [path for path, text in wanted.items() if path.read_text() != text]
    if args.check:
        for path in stale:
            print(f"{path.relative_to(ROOT)} is not current: run scripts/config_docs.py")
        return 1 if stale else 0
    for path in stale:
        path.write_text(wanted[path])
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
