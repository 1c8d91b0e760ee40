"""The stored forms of deployed modules: the signed bundle value in the replicated
``_modules`` document and the node-local record of who owns each module name.

Bundle value format (msgpack map, also described in schemas/openapi.yaml):
``{"wasm": bytes, "manifest": bytes, "signature": bytes}``. The owner record is
``{name: [publisher, raw public key]}``, never replicated.
"""

from __future__ import annotations

import logging

import msgpack

from edgestate.errors import ManifestError
from edgestate.runtime.policy import Owner

__all__ = [
    "MODULES_DOC",
    "OWNERS_KEY",
    "decode_bundle",
    "encode_bundle",
    "pack_owners",
    "unpack_owners",
]

log = logging.getLogger(__name__)

MODULES_DOC = "_modules"
OWNERS_KEY = "module-owners"  # node-local: {name: [publisher, raw public key]}


def encode_bundle(wasm: bytes, manifest: bytes, signature: bytes) -> bytes:
    """A bundle alone, as ``_modules`` held it before version history (history.py)."""
    return bytes(msgpack.packb({"wasm": wasm, "manifest": manifest, "signature": signature}))


def decode_bundle(raw: bytes) -> tuple[bytes, bytes, bytes]:
    """(wasm, manifest, signature) of a stored bundle, or :class:`ManifestError`."""
    try:
        data = msgpack.unpackb(raw)
        parts = (data["wasm"], data["manifest"], data["signature"])
    except (ValueError, TypeError, KeyError, msgpack.UnpackException) as exc:
        raise ManifestError(f"stored module bundle is malformed: {exc}") from exc
    if not all(isinstance(p, bytes) for p in parts):
        raise ManifestError("stored module bundle fields must be bytes")
    return parts


def pack_owners(owners: dict[str, Owner]) -> bytes:
    """The owner record's stored bytes."""
    return bytes(msgpack.packb({n: [o.publisher, o.public_key] for n, o in owners.items()}))


def unpack_owners(raw: bytes | None) -> dict[str, Owner]:
    """The owner record from its stored bytes (empty when absent or unreadable)."""
    if raw is None:
        return {}
    try:
        data = msgpack.unpackb(raw)
        return {str(n): Owner(str(p), bytes(k)) for n, (p, k) in data.items()}
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        # Written only by this node: a damaged record must not stop it from
        # starting, but it is said loudly, since names are unguarded until redeployed.
        log.error("module owner record is unreadable (%s); module names are unowned", exc)
        return {}
