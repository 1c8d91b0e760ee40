"""Module manifests: what a module is, what it may touch and what it may use.

The JSON form is specified by ``schemas/manifest.schema.json``; this parser
enforces the same rules (a test runs both over one corpus) and names the field
at fault, so the runtime needs no JSON Schema engine.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from edgestate import jsonstrict
from edgestate.errors import ManifestError
from edgestate.store import DOC_NAME_RULE, is_doc_name, is_system_document

_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
_VERSION = re.compile(r"[0-9]+\.[0-9]+\.[0-9]+([-+][0-9A-Za-z.+-]+)?")
_EXPORT = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
MAX_PAGES = 65536  # 4 GiB: the wasm32 address space
_KEYS = {"name", "version", "entry", "documents", "limits", "description"}
_LIMIT_KEYS = {"fuel", "wall_time_ms", "memory_pages", "max_output_bytes"}


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """Resource limits of one invocation. ``None`` means "not set by the manifest"."""

    memory_pages: int
    max_output_bytes: int
    fuel: int | None = None
    wall_time_ms: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Manifest:
    """A parsed, validated module manifest."""

    name: str
    version: str
    entry: str
    reads: frozenset[str]
    writes: frozenset[str]
    limits: Limits
    description: str = ""


def _positive_int(value: Any, field: str, maximum: int | None = None) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ManifestError(f"manifest field {field} must be a positive integer, got {value!r}")
    if maximum is not None and value > maximum:
        raise ManifestError(f"manifest field {field} must be at most {maximum}, got {value}")
    return value


def _doc_list(value: Any, field: str) -> frozenset[str]:
    if not isinstance(value, list):
        raise ManifestError(f"manifest field {field} must be a list of document names")
    for item in value:
        if not is_doc_name(item):
            shown = item[:80] if isinstance(item, str) else item
            raise ManifestError(f"manifest field {field} holds {shown!r}: use {DOC_NAME_RULE}")
        if is_system_document(item):
            # The node's own documents (_modules, membership) are not for modules:
            # a module that could write _modules could deploy code cluster-wide.
            raise ManifestError(
                f"manifest field {field} holds {item!r}: documents starting with '_' are "
                "the node's own and cannot be granted to a module"
            )
    if len(set(value)) != len(value):
        raise ManifestError(f"manifest field {field} lists a document twice")
    return frozenset(value)


def parse_manifest(data: bytes | str) -> Manifest:
    """Parse and validate manifest JSON; raise :class:`ManifestError` naming the fault.

    A repeated key (``DuplicateKeyError``) or NaN/Infinity is refused too: the
    manifest is signed as bytes, and every reader must see the same module.
    """
    return manifest_from_dict(jsonstrict.loads(data, what="manifest", invalid=ManifestError))


def manifest_from_dict(raw: Any) -> Manifest:
    """Validate an already decoded manifest."""
    if not isinstance(raw, dict):
        raise ManifestError("manifest must be a JSON object")
    unknown = set(raw) - _KEYS
    if unknown:
        raise ManifestError(f"manifest has unknown fields: {', '.join(sorted(unknown))}")
    for field in ("name", "version", "documents", "limits"):
        if field not in raw:
            raise ManifestError(f"manifest is missing required field {field!r}")
    name, version = raw["name"], raw["version"]
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ManifestError(
            f"manifest name {name!r} must be 1-64 characters from a-z 0-9 _ . - "
            "starting with a letter or digit"
        )
    if not isinstance(version, str) or not _VERSION.fullmatch(version):
        raise ManifestError(f"manifest version {version!r} must look like 1.2.3")
    entry = raw.get("entry", "handle")
    if not isinstance(entry, str) or not _EXPORT.fullmatch(entry):
        raise ManifestError(f"manifest entry {entry!r} is not a valid export name")
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise ManifestError("manifest description must be a string")

    documents = raw["documents"]
    if not isinstance(documents, dict) or set(documents) - {"read", "write"}:
        raise ManifestError("manifest field documents must be an object with read and write")
    reads = _doc_list(documents.get("read", []), "documents.read")
    writes = _doc_list(documents.get("write", []), "documents.write")

    limits = raw["limits"]
    if not isinstance(limits, dict):
        raise ManifestError("manifest field limits must be an object")
    unknown = set(limits) - _LIMIT_KEYS
    if unknown:
        raise ManifestError(f"manifest limits has unknown fields: {', '.join(sorted(unknown))}")
    for field in ("memory_pages", "max_output_bytes"):
        if field not in limits:
            raise ManifestError(f"manifest limits is missing required field {field!r}")
    if "fuel" not in limits and "wall_time_ms" not in limits:
        raise ManifestError("manifest limits must set fuel, wall_time_ms or both")
    parsed = Limits(
        memory_pages=_positive_int(limits["memory_pages"], "limits.memory_pages", MAX_PAGES),
        max_output_bytes=_positive_int(limits["max_output_bytes"], "limits.max_output_bytes"),
        fuel=_positive_int(limits["fuel"], "limits.fuel") if "fuel" in limits else None,
        wall_time_ms=(
            _positive_int(limits["wall_time_ms"], "limits.wall_time_ms")
            if "wall_time_ms" in limits
            else None
        ),
    )
    return Manifest(
        name=name,
        version=version,
        entry=entry,
        reads=reads,
        writes=writes,
        limits=parsed,
        description=description,
    )
