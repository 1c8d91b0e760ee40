"""Module names are owned: one publisher cannot take over another's module."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edgestate.errors import ConfigError, ModuleOwnershipError, PolicyViolationError
from edgestate.runtime import Runtime, RuntimeConfig, TrustPolicy, generate_key, raw_public_key
from edgestate.runtime.policy import public_key_text
from edgestate.store import Store

from .conftest import REPO, policy_dict
from .helpers import deploy, manifest, wat

SCHEMA = json.loads((REPO / "schemas" / "trust-policy.schema.json").read_text())


def _two_publishers(
    key: Ed25519PrivateKey, other: Ed25519PrivateKey, **fields: Any
) -> dict[str, Any]:
    doc = policy_dict(key)
    first = doc["publishers"][0]  # type: ignore[index]
    second = copy.deepcopy(first)
    second.update(name="acme", public_key=public_key_text(raw_public_key(other)), **fields)
    doc["publishers"] = [first, second]
    return doc


@pytest.fixture
def acme() -> Ed25519PrivateKey:
    return generate_key()


def _runtime(store: Store, policy: dict[str, Any], tmp_path: Path) -> Runtime:
    return Runtime(store, TrustPolicy.from_dict(policy), RuntimeConfig(cache_dir=tmp_path / "c"))


def test_another_publisher_cannot_replace_a_held_module(
    store: Store, key: Ed25519PrivateKey, acme: Ed25519PrivateKey, tmp_path: Path
) -> None:
    with _runtime(store, _two_publishers(key, acme), tmp_path) as runtime:
        mine = deploy(runtime, key, wat("writes_then_status"), manifest("kv-echo"))
        with pytest.raises(ModuleOwnershipError, match="belongs to publisher 'tests'") as err:
            deploy(runtime, acme, wat("noop"), manifest("kv-echo"))
        assert "'acme' may not replace it" in str(err.value)
        assert runtime.module("kv-echo") is mine
        # The owner itself may upgrade; unloading keeps the name held.
        upgraded = deploy(runtime, key, wat("noop"), manifest("kv-echo"))
        assert runtime.module("kv-echo") is upgraded
        runtime.unload("kv-echo")
        with pytest.raises(ModuleOwnershipError):
            deploy(runtime, acme, wat("noop"), manifest("kv-echo"))
        # Removal frees the name for anyone.
        runtime.release("kv-echo")
        assert deploy(runtime, acme, wat("noop"), manifest("kv-echo")).publisher == "acme"


def test_a_rotated_key_of_the_same_publisher_may_replace(
    store: Store, key: Ed25519PrivateKey, acme: Ed25519PrivateKey, tmp_path: Path
) -> None:
    policy = _two_publishers(key, acme)
    policy["publishers"][1]["name"] = "tests"  # a second key of publisher "tests"
    with _runtime(store, policy, tmp_path) as runtime:
        deploy(runtime, key, wat("noop"), manifest("kv-echo"))
        assert deploy(runtime, acme, wat("noop"), manifest("kv-echo")).publisher == "tests"


def test_a_modules_list_limits_and_reserves_names(
    store: Store, key: Ed25519PrivateKey, acme: Ed25519PrivateKey, tmp_path: Path
) -> None:
    policy = _two_publishers(key, acme, modules=["acme-*", "acme.tool"])
    with _runtime(store, policy, tmp_path) as runtime:
        with pytest.raises(PolicyViolationError, match=r"modules \['acme-\*', 'acme.tool'\]"):
            deploy(runtime, acme, wat("noop"), manifest("kv-echo"))
        assert deploy(runtime, acme, wat("noop"), manifest("acme-x")).publisher == "acme"
        # "tests" has no list: any name, except those reserved for acme.
        with pytest.raises(ModuleOwnershipError, match="reserved for publisher 'acme'"):
            deploy(runtime, key, wat("noop"), manifest("acme-y"))
        assert deploy(runtime, key, wat("noop"), manifest("kv-echo")).publisher == "tests"


@pytest.mark.parametrize("modules", ["kv-*", [3], ["Upper"], ["a b"]])
def test_a_malformed_modules_list_is_refused(key: Ed25519PrivateKey, modules: Any) -> None:
    doc = policy_dict(key)
    doc["publishers"][0]["modules"] = modules  # type: ignore[index]
    with pytest.raises(ConfigError, match=r"publishers\[0\]\.modules"):
        TrustPolicy.from_dict(doc)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, SCHEMA)


def test_parser_and_schema_accept_a_modules_list(key: Ed25519PrivateKey) -> None:
    doc = policy_dict(key)
    doc["publishers"][0]["modules"] = ["kv-echo", "acme-*", "v[0-9].tool"]  # type: ignore[index]
    jsonschema.validate(doc, SCHEMA)
    assert TrustPolicy.from_dict(doc).publishers[0].modules == ("kv-echo", "acme-*", "v[0-9].tool")
