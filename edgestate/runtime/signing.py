"""Publisher keys and module signatures (Ed25519, from ``cryptography``).

A signature covers the wasm's SHA-256 and the manifest's exact bytes:

    message = b"edgestate-module-signature/1\\n" + sha256(wasm) + manifest_bytes

The digest is fixed-length, so the concatenation is unambiguous; the domain tag
keeps a module signature from being valid as anything else signed by the same
key. The manifest is signed as bytes, never re-serialized, so no JSON
canonicalization is involved. The signature file is JSON::

    {"format": "edgestate-module-signature/1", "algorithm": "ed25519",
     "public_key": "<base64>", "wasm_sha256": "<hex>",
     "manifest_sha256": "<hex>", "signature": "<base64>"}

The two digests in the file are not trusted; they only let a refusal say
*which* file changed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from edgestate import jsonstrict
from edgestate.errors import ConfigError, SignatureError
from edgestate.files import write_private

FORMAT = "edgestate-module-signature/1"
_DOMAIN = FORMAT.encode() + b"\n"


def generate_key() -> Ed25519PrivateKey:
    """A new publisher signing key."""
    return Ed25519PrivateKey.generate()


def raw_public_key(key: Ed25519PrivateKey | Ed25519PublicKey) -> bytes:
    """The 32 raw bytes of a public key (the form the trust policy stores)."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def save_private_key(key: Ed25519PrivateKey, path: Path) -> None:
    """Write ``key`` as unencrypted PKCS#8 PEM, readable by the owner only."""
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    write_private(path, pem)


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """Read a PEM private key written by :func:`save_private_key`."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read key {path}: {exc.strerror}") from exc
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{path} is not an unencrypted PEM private key") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{path} holds a {type(key).__name__}, not an Ed25519 key")
    return key


def _message(wasm: bytes, manifest: bytes) -> bytes:
    return _DOMAIN + hashlib.sha256(wasm).digest() + manifest


def sign_module(wasm: bytes, manifest: bytes, key: Ed25519PrivateKey) -> bytes:
    """The signature file (JSON bytes) for ``wasm`` with ``manifest``."""
    doc = {
        "format": FORMAT,
        "algorithm": "ed25519",
        "public_key": base64.b64encode(raw_public_key(key)).decode(),
        "wasm_sha256": hashlib.sha256(wasm).hexdigest(),
        "manifest_sha256": hashlib.sha256(manifest).hexdigest(),
        "signature": base64.b64encode(key.sign(_message(wasm, manifest))).decode(),
    }
    return (json.dumps(doc, indent=2) + "\n").encode()


@dataclass(frozen=True, slots=True)
class ModuleSignature:
    """A parsed signature file."""

    public_key: bytes
    wasm_sha256: str
    manifest_sha256: str
    signature: bytes


def parse_signature(data: bytes) -> ModuleSignature:
    """Parse a signature file; :class:`SignatureError` if it is malformed."""
    raw: Any = jsonstrict.loads(data, what="signature file", invalid=SignatureError)
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise SignatureError(f"signature file is not in the {FORMAT} format")
    if raw.get("algorithm") != "ed25519":
        raise SignatureError(f"unsupported signature algorithm {raw.get('algorithm')!r}")
    try:
        public_key = base64.b64decode(raw["public_key"], validate=True)
        signature = base64.b64decode(raw["signature"], validate=True)
        wasm_sha256, manifest_sha256 = str(raw["wasm_sha256"]), str(raw["manifest_sha256"])
    except (KeyError, TypeError, binascii.Error) as exc:
        raise SignatureError(f"signature file is missing or garbles a field: {exc}") from exc
    if len(public_key) != 32 or len(signature) != 64:
        raise SignatureError("signature file holds a key or signature of the wrong size")
    return ModuleSignature(public_key, wasm_sha256, manifest_sha256, signature)


def verify_module(wasm: bytes, manifest: bytes, signature: ModuleSignature) -> None:
    """Raise :class:`SignatureError` unless ``signature`` covers exactly these bytes."""
    try:
        Ed25519PublicKey.from_public_bytes(signature.public_key).verify(
            signature.signature, _message(wasm, manifest)
        )
    except InvalidSignature:
        if hashlib.sha256(wasm).hexdigest() != signature.wasm_sha256:
            what = "the wasm changed since it was signed (tampered or rebuilt)"
        elif hashlib.sha256(manifest).hexdigest() != signature.manifest_sha256:
            what = "the manifest changed since it was signed"
        else:
            what = "the signature does not verify against its public key"
        raise SignatureError(f"module signature refused: {what}") from None
