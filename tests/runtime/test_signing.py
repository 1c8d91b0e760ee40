"""Signature refusals: unsigned, tampered, wrongly signed and untrusted modules are
refused with a clear error before anything is compiled."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edgestate.errors import SignatureError, UntrustedPublisherError
from edgestate.runtime import Runtime, generate_key, load_private_key, save_private_key, sign_module
from edgestate.runtime.signing import parse_signature, verify_module

from .helpers import manifest, wat

WASM = wat("noop")
MANIFEST = manifest("noop")


def nothing_compiled(runtime: Runtime) -> bool:
    return runtime.cache.stats.hits == runtime.cache.stats.misses == 0 and not runtime.modules()


def test_signed_module_loads(runtime: Runtime, key: Ed25519PrivateKey) -> None:
    loaded = runtime.load(WASM, MANIFEST, sign_module(WASM, MANIFEST, key))
    assert (loaded.name, loaded.publisher) == ("noop", "tests")


def test_tampered_wasm_is_refused(runtime: Runtime, key: Ed25519PrivateKey) -> None:
    signature = sign_module(WASM, MANIFEST, key)
    tampered = WASM[:-1] + bytes([WASM[-1] ^ 1])
    with pytest.raises(SignatureError, match="wasm changed"):
        runtime.load(tampered, MANIFEST, signature)
    assert nothing_compiled(runtime)


def test_tampered_manifest_is_refused(runtime: Runtime, key: Ed25519PrivateKey) -> None:
    signature = sign_module(WASM, MANIFEST, key)
    greedy = MANIFEST.replace(b'"app"', b'"ro"')
    with pytest.raises(SignatureError, match="manifest changed"):
        runtime.load(WASM, greedy, signature)
    assert nothing_compiled(runtime)


def test_signature_by_another_key_under_a_trusted_name_is_refused(
    runtime: Runtime, key: Ed25519PrivateKey
) -> None:
    forged = json.loads(sign_module(WASM, MANIFEST, generate_key()))
    forged["public_key"] = json.loads(sign_module(WASM, MANIFEST, key))["public_key"]
    with pytest.raises(SignatureError, match="does not verify"):
        runtime.load(WASM, MANIFEST, json.dumps(forged).encode())
    assert nothing_compiled(runtime)


def test_untrusted_publisher_is_refused_before_compiling(runtime: Runtime) -> None:
    garbage = b"not wasm at all"
    with pytest.raises(UntrustedPublisherError, match="not in the trust policy"):
        runtime.load(garbage, MANIFEST, sign_module(garbage, MANIFEST, generate_key()))
    assert nothing_compiled(runtime)


def test_unsigned_module_is_refused(runtime: Runtime, tmp_path: Path) -> None:
    (tmp_path / "m.wasm").write_bytes(WASM)
    (tmp_path / "m.manifest.json").write_bytes(MANIFEST)
    with pytest.raises(SignatureError, match="unsigned"):
        runtime.load_files(tmp_path / "m.wasm")


@pytest.mark.parametrize(
    "signature",
    [b"", b"{}", b"[1]", b'{"format": "edgestate-module-signature/1", "algorithm": "rsa"}'],
)
def test_malformed_signature_file_is_refused(runtime: Runtime, signature: bytes) -> None:
    with pytest.raises(SignatureError):
        runtime.load(WASM, MANIFEST, signature)


def test_truncated_signature_is_refused(key: Ed25519PrivateKey) -> None:
    doc = json.loads(sign_module(WASM, MANIFEST, key))
    doc["signature"] = base64.b64encode(b"\0" * 63).decode()
    with pytest.raises(SignatureError, match="wrong size"):
        parse_signature(json.dumps(doc).encode())


def test_load_files_uses_sibling_manifest_and_signature(
    runtime: Runtime, key: Ed25519PrivateKey, tmp_path: Path
) -> None:
    (tmp_path / "m.wasm").write_bytes(WASM)
    (tmp_path / "m.manifest.json").write_bytes(MANIFEST)
    (tmp_path / "m.sig").write_bytes(sign_module(WASM, MANIFEST, key))
    assert runtime.load_files(tmp_path / "m.wasm").name == "noop"


def test_private_key_round_trips_with_owner_only_mode(tmp_path: Path) -> None:
    key = generate_key()
    path = tmp_path / "k.pem"
    save_private_key(key, path)
    assert path.stat().st_mode & 0o777 == 0o600
    again = load_private_key(path)
    verify_module(WASM, MANIFEST, parse_signature(sign_module(WASM, MANIFEST, again)))
