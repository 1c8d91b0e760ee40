"""Every JSON edgestate takes is strict: no repeated keys, no NaN/Infinity."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edgestate import jsonstrict
from edgestate.cli.runtime_cmds import keygen, sign
from edgestate.errors import (
    ConfigError,
    DuplicateKeyError,
    ManifestError,
    NonFiniteNumberError,
    SignatureError,
)
from edgestate.runtime import Runtime, TrustPolicy, parse_manifest, sign_module
from edgestate.runtime.signing import parse_signature

from .conftest import policy_dict
from .helpers import manifest, wat

# Two "name" keys: a reviewer reading top-down sees "kv-echo", Python's json
# (last wins) would load "evil".
TWO_NAMES = (
    b'{"name": "kv-echo", "version": "1.0.0", "documents": {"write": ["app"]},'
    b' "limits": {"fuel": 1000, "memory_pages": 1, "max_output_bytes": 64}, "name": "evil"}'
)


def test_repeated_keys_are_refused_naming_the_key_and_where() -> None:
    with pytest.raises(DuplicateKeyError, match=r"repeats the key 'b' in the object at \$\.a\[1\]"):
        jsonstrict.loads('{"a": [0, {"b": 1, "c": 2, "b": 3}]}', what="input")
    with pytest.raises(DuplicateKeyError, match=r"at \$\['x y'\]"):
        jsonstrict.loads('{"x y": {"k": 1, "k": 1}}', what="input")
    assert jsonstrict.loads('{"a": {"b": 1}, "b": {"a": 2}}', what="input") == {
        "a": {"b": 1},
        "b": {"a": 2},
    }


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_numbers_are_refused(constant: str) -> None:
    with pytest.raises(NonFiniteNumberError, match=rf"body holds {constant}"):
        jsonstrict.loads(f'{{"x": [{constant}]}}', what="body")


def test_input_that_is_not_json_keeps_the_callers_error_class() -> None:
    with pytest.raises(ManifestError, match="line 2 column 1"):
        jsonstrict.loads("{\n", what="m", invalid=ManifestError)
    with pytest.raises(ManifestError, match="not UTF-8"):
        jsonstrict.loads(b'{"a": "\xff"}', what="m", invalid=ManifestError)


def test_a_manifest_naming_itself_twice_is_refused() -> None:
    assert json.loads(TWO_NAMES)["name"] == "evil"  # what the lax reader did
    with pytest.raises(DuplicateKeyError, match="manifest repeats the key 'name'"):
        parse_manifest(TWO_NAMES)
    nan_fuel = manifest("m").replace(b'"fuel": 50000000', b'"fuel": NaN')
    with pytest.raises(NonFiniteNumberError):
        parse_manifest(nan_fuel)


def test_a_signed_manifest_with_repeated_keys_does_not_load(
    runtime: Runtime, key: Ed25519PrivateKey
) -> None:
    wasm = wat("noop")
    with pytest.raises(DuplicateKeyError):
        runtime.load(wasm, TWO_NAMES, sign_module(wasm, TWO_NAMES, key))
    assert runtime.modules() == []


def test_trust_policy_with_repeated_keys_is_refused(tmp_path: Path, key: Ed25519PrivateKey) -> None:
    text = json.dumps(policy_dict(key))
    # A second "write" list further down would silently widen the first.
    widened = text.replace('"limits":', '"documents": {"write": ["*"]}, "limits":', 1)
    path = tmp_path / "policy.json"
    path.write_text(widened)
    with pytest.raises(
        DuplicateKeyError, match=r"repeats the key 'documents' .* \$\.publishers\[0\]"
    ):
        TrustPolicy.load(path)
    path.write_text("{")
    with pytest.raises(ConfigError, match="not valid JSON"):
        TrustPolicy.load(path)


def test_signature_file_with_repeated_keys_is_refused(key: Ed25519PrivateKey) -> None:
    wasm, man = wat("noop"), manifest("m")
    sig = sign_module(wasm, man, key)
    doubled = sig.replace(b'"algorithm"', b'"public_key": "AAAA", "algorithm"', 1)
    with pytest.raises(DuplicateKeyError, match="signature file repeats the key 'public_key'"):
        parse_signature(doubled)
    with pytest.raises(SignatureError):
        parse_signature(b"{")


def test_sign_refuses_a_manifest_with_repeated_keys(tmp_path: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(keygen, ["--out", str(tmp_path / "k")]).exit_code == 0
    (tmp_path / "m.wasm").write_bytes(wat("noop"))
    (tmp_path / "m.manifest.json").write_bytes(TWO_NAMES)
    result = runner.invoke(sign, [str(tmp_path / "m.wasm"), "--key", str(tmp_path / "k.key")])
    assert result.exit_code == 1 and "duplicate_json_key" in result.output, result.output
    assert "'name'" in result.output
    assert not (tmp_path / "m.sig").exists()
