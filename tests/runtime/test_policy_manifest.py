"""Manifests and the trust policy: parsing, ceilings, and agreement with the schemas."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edgestate.errors import ConfigError, ManifestError, PolicyViolationError
from edgestate.guest import EXAMPLES_DIR
from edgestate.runtime import Runtime, TrustPolicy, parse_manifest, raw_public_key
from edgestate.runtime.manifest import manifest_from_dict

from .conftest import policy_dict
from .helpers import deploy, manifest, wat

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
MANIFEST_SCHEMA = json.loads((SCHEMAS / "manifest.schema.json").read_text())
POLICY_SCHEMA = json.loads((SCHEMAS / "trust-policy.schema.json").read_text())

VALID: dict[str, Any] = {
    "name": "counter",
    "version": "1.2.3",
    "documents": {"read": ["a"], "write": ["b.c"]},
    "limits": {"fuel": 10, "memory_pages": 2, "max_output_bytes": 5},
}


def variant(path: str, value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(VALID)
    *parents, last = path.split(".")
    target = doc
    for p in parents:
        target = target[p]
    if value is _DELETE:
        del target[last]
    else:
        target[last] = value
    return doc


_DELETE = object()
INVALID = [
    variant("name", "Upper"),
    variant("name", ""),
    variant("version", "1.0"),
    variant("entry", "9bad"),
    variant("extra", 1),
    variant("documents.read", ["bad name!"]),
    variant("documents.write", ["x", "x"]),
    variant("documents.admin", []),
    variant("limits.fuel", 0),
    variant("limits.fuel", _DELETE),
    variant("limits.memory_pages", 65537),
    variant("limits.memory_pages", _DELETE),
    variant("limits.max_output_bytes", "5"),
    variant("limits.cpu", 3),
    variant("limits", _DELETE),
]
ACCEPTED = [
    VALID,
    variant("entry", "run"),
    variant("limits.fuel", _DELETE) | {"limits": {**VALID["limits"], "wall_time_ms": 5}},
    variant("documents", {}),
    variant("description", "hello"),
]


@pytest.mark.parametrize("doc", ACCEPTED)
def test_parser_and_schema_accept_the_same_manifests(doc: dict[str, Any]) -> None:
    jsonschema.validate(doc, MANIFEST_SCHEMA)
    manifest_from_dict(doc)


@pytest.mark.parametrize("doc", INVALID)
def test_parser_and_schema_refuse_the_same_manifests(doc: dict[str, Any]) -> None:
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, MANIFEST_SCHEMA)
    with pytest.raises(ManifestError):
        manifest_from_dict(doc)


def test_example_manifests_are_valid() -> None:
    for path in EXAMPLES_DIR.glob("*.manifest.json"):
        jsonschema.validate(json.loads(path.read_text()), MANIFEST_SCHEMA)
        parse_manifest(path.read_bytes())


def test_manifest_error_names_the_field() -> None:
    with pytest.raises(ManifestError, match=r"limits\.memory_pages"):
        manifest_from_dict(variant("limits.memory_pages", -1))
    with pytest.raises(ManifestError, match="not valid JSON"):
        parse_manifest(b"{")


def test_policy_file_matches_schema(key: Ed25519PrivateKey) -> None:
    jsonschema.validate(policy_dict(key), POLICY_SCHEMA)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda p: p.update(version=2),
        lambda p: p["publishers"][0].update(public_key="short"),
        lambda p: p["publishers"][0]["limits"].pop("fuel"),
        lambda p: p["publishers"][0].update(documents={"read": ["no spaces"]}),
        lambda p: p["publishers"][0].update(extra=True),
    ],
)
def test_policy_parser_and_schema_refuse_the_same_files(
    key: Ed25519PrivateKey, mutate: Any
) -> None:
    doc = policy_dict(key)
    mutate(doc)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, POLICY_SCHEMA)
    with pytest.raises(ConfigError):
        TrustPolicy.from_dict(doc)


def test_policy_refuses_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        TrustPolicy.load(tmp_path / "absent.json")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"reads": ("secret",)}, "read document 'secret'"),
        ({"writes": ("ro",)}, "write document 'ro'"),
        ({"fuel": 2_000_000_000}, "limits.fuel = 2000000000"),
        ({"memory_pages": 257}, "limits.memory_pages = 257"),
        ({"max_output_bytes": 1 << 30}, "limits.max_output_bytes"),
        ({"wall_time_ms": 5000}, "limits.wall_time_ms = 5000"),
    ],
)
def test_manifest_over_policy_is_refused_naming_the_excess(
    runtime: Runtime, key: Ed25519PrivateKey, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(PolicyViolationError, match=message):
        deploy(runtime, key, wat("noop"), manifest("greedy", **kwargs))
    assert not runtime.modules()


def test_policy_patterns_glob(key: Ed25519PrivateKey) -> None:
    doc = policy_dict(key)
    doc["publishers"][0]["documents"] = {"read": ["tenant-*"], "write": ["tenant-?.log"]}
    policy = TrustPolicy.from_dict(doc)
    ok = manifest_from_dict(
        variant("documents", {"read": ["tenant-42"], "write": ["tenant-7.log"]})
    )
    grant = policy.check(raw_public_key(key), ok)
    assert grant.publisher == "tests"
    bad = manifest_from_dict(variant("documents", {"write": ["tenant-42"]}))
    with pytest.raises(PolicyViolationError):
        policy.check(raw_public_key(key), bad)


def test_omitted_limits_are_capped_at_the_ceiling(key: Ed25519PrivateKey) -> None:
    policy = TrustPolicy.from_dict(policy_dict(key, wall_time_ms=123))
    parsed = manifest_from_dict(variant("documents", {}))
    grant = policy.check(raw_public_key(key), parsed)
    assert (grant.fuel, grant.wall_time_ms) == (10, 123)
