"""The trust policy: which publishers a node trusts, and how far.

A policy is not a key list. Each publisher carries the ceilings its modules may
be granted: document patterns (``fnmatch`` globs, case-sensitive) they may read
and write, and the largest limits. A manifest asking for more is refused with
the first field that exceeded, so the operator knows what to change. The file
format is ``schemas/trust-policy.schema.json``.

Module names are owned (see :meth:`TrustPolicy.check_name`): a publisher with a
``modules`` list may deploy only names matching it, and those names are reserved
for it; a publisher without one (every policy written before the list existed)
may deploy any name no other publisher reserves. A name someone already holds
stays theirs until the module is removed.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from edgestate import jsonstrict
from edgestate.errors import (
    ConfigError,
    ModuleOwnershipError,
    PolicyViolationError,
    UntrustedPublisherError,
)
from edgestate.runtime.manifest import Limits, Manifest

_PUBLISHER = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_PATTERN = re.compile(r"[A-Za-z0-9_.*?\[\]!-]{1,64}")
# Module names are lowercase (manifest.py): so are the patterns that grant them.
_MODULE_PATTERN = re.compile(r"[a-z0-9_.*?\[\]!-]{1,64}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Publisher:
    """One trusted publisher and the most its modules may be granted."""

    name: str
    public_key: bytes  # raw 32-byte Ed25519 key
    read: tuple[str, ...]
    write: tuple[str, ...]
    limits: Limits  # every field set: these are ceilings
    # fnmatch patterns of module names it may deploy (and that no one else may);
    # None: any name not reserved by another publisher.
    modules: tuple[str, ...] | None = None
    # Largest wasm (bytes) its modules may be; None: only the node's bundle limit
    # (store.max_value_bytes) applies, so a useful cap sits below that.
    max_module_bytes: int | None = None

    def may_name(self, module: str) -> bool:
        """True if ``module`` matches one of this publisher's ``modules`` patterns."""
        return self.modules is not None and any(fnmatchcase(module, p) for p in self.modules)

    def may_read(self, doc: str) -> bool:
        """True if ``doc`` matches a read or write pattern (write implies read)."""
        return any(fnmatchcase(doc, p) for p in self.read + self.write)

    def may_write(self, doc: str) -> bool:
        """True if ``doc`` matches a write pattern."""
        return any(fnmatchcase(doc, p) for p in self.write)


@dataclass(frozen=True, slots=True)
class Owner:
    """Who holds a module name: the publisher (as the policy named it) and its key."""

    publisher: str
    public_key: bytes


@dataclass(frozen=True, slots=True)
class Grant:
    """What a module is allowed once its manifest passed its publisher's policy."""

    publisher: str
    fuel: int
    wall_time_ms: int
    memory_pages: int
    max_output_bytes: int


def public_key_text(raw: bytes) -> str:
    """The policy-file form of a raw Ed25519 public key."""
    return base64.b64encode(raw).decode()


def parse_public_key(text: str) -> bytes:
    """Raw key bytes of a base64 public key, or :class:`ConfigError`."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ConfigError(f"public key {text[:20]!r}... is not base64") from exc
    if len(raw) != 32:
        raise ConfigError(f"an Ed25519 public key is 32 bytes, this one is {len(raw)}")
    return raw


class TrustPolicy:
    """The publishers a node trusts, keyed by public key."""

    def __init__(self, publishers: list[Publisher], *, source: Path | None = None) -> None:
        self.source = source  # the file it was read from (named in refusals), if any
        self._by_key = {p.public_key: p for p in publishers}
        if len(self._by_key) != len(publishers):
            raise ConfigError("trust policy lists the same public key twice")

    @property
    def publishers(self) -> list[Publisher]:
        """All trusted publishers."""
        return list(self._by_key.values())

    @classmethod
    def load(cls, path: str | Path) -> TrustPolicy:
        """Read a policy file; :class:`ConfigError` if it is missing or malformed."""
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise ConfigError(f"cannot read trust policy {path}: {exc.strerror}") from exc
        raw = jsonstrict.loads(text, what=f"trust policy {path}", invalid=ConfigError)
        return cls(cls.from_dict(raw).publishers, source=Path(path))

    @classmethod
    def from_dict(cls, raw: Any) -> TrustPolicy:
        """Validate a decoded policy document."""
        if not isinstance(raw, dict) or raw.get("version") != 1:
            raise ConfigError('trust policy must be an object with "version": 1')
        if set(raw) - {"version", "publishers"} or not isinstance(raw.get("publishers"), list):
            raise ConfigError('trust policy holds only "version" and a "publishers" list')
        return cls([_publisher(p, i) for i, p in enumerate(raw["publishers"])])

    def publisher(self, public_key: bytes) -> Publisher:
        """The publisher owning ``public_key``, or :class:`UntrustedPublisherError`."""
        found = self._by_key.get(public_key)
        if found is None:
            where = f" ({self.source})" if self.source is not None else ""
            raise UntrustedPublisherError(
                f"module signed by key {public_key_text(public_key)} which is not in the "
                f"trust policy{where}; add its publisher to trust the module. A running node "
                "rereads its policy on SIGHUP, `edgestate trust reload` or POST "
                "/v1/admin/trust-policy/reload: no restart needed"
            )
        return found

    def check_name(self, public_key: bytes, name: str, holder: Owner | None) -> None:
        """Refuse deploying module ``name`` signed by ``public_key`` unless it may own it.

        ``holder`` is whoever holds the name now (None: nobody). The same key, or
        another key of the same publisher name (a rotation), may replace it.
        """
        pub = self.publisher(public_key)
        if pub.modules is not None and not pub.may_name(name):
            raise PolicyViolationError(
                f"publisher {pub.name!r} may not deploy a module named {name!r}: outside "
                f"its policy (modules {list(pub.modules)})"
            )
        if pub.modules is None:
            for other in self._by_key.values():
                if other.name != pub.name and other.may_name(name):
                    raise ModuleOwnershipError(
                        f"module name {name!r} is reserved for publisher {other.name!r} by "
                        f"the trust policy; publisher {pub.name!r} may not deploy it"
                    )
        if holder is not None and holder.public_key != public_key and holder.publisher != pub.name:
            raise ModuleOwnershipError(
                f"module {name!r} belongs to publisher {holder.publisher!r}; publisher "
                f"{pub.name!r} may not replace it (remove the module first to hand the "
                "name over)"
            )

    def check_size(self, public_key: bytes, name: str, wasm_bytes: int) -> None:
        """Refuse a module of ``wasm_bytes`` over its publisher's ``max_module_bytes``."""
        pub = self.publisher(public_key)
        cap = pub.max_module_bytes
        if cap is not None and wasm_bytes > cap:
            raise PolicyViolationError(
                f"module {name!r} of publisher {pub.name!r} is {wasm_bytes} bytes, over its "
                f"policy's max_module_bytes of {cap} (strip its debug sections: "
                "`edgestate sign` warns which)"
            )

    def check(self, public_key: bytes, manifest: Manifest) -> Grant:
        """The grant for ``manifest`` signed by ``public_key``, or a refusal naming why."""
        pub = self.publisher(public_key)
        where = f"module {manifest.name!r} of publisher {pub.name!r}"
        for doc in sorted(manifest.reads):
            if not pub.may_read(doc):
                raise PolicyViolationError(
                    f"{where} asks to read document {doc!r}, outside its policy "
                    f"(read {list(pub.read + pub.write)})"
                )
        for doc in sorted(manifest.writes):
            if not pub.may_write(doc):
                raise PolicyViolationError(
                    f"{where} asks to write document {doc!r}, outside its policy "
                    f"(write {list(pub.write)})"
                )
        asked, ceiling = manifest.limits, pub.limits
        for field in ("fuel", "wall_time_ms", "memory_pages", "max_output_bytes"):
            want, most = getattr(asked, field), getattr(ceiling, field)
            if want is not None and want > most:
                raise PolicyViolationError(
                    f"{where} asks for limits.{field} = {want}, over its policy's ceiling of {most}"
                )
        assert ceiling.fuel is not None and ceiling.wall_time_ms is not None
        # A limit the manifest leaves out is capped at the publisher's ceiling.
        return Grant(
            publisher=pub.name,
            fuel=asked.fuel or ceiling.fuel,
            wall_time_ms=asked.wall_time_ms or ceiling.wall_time_ms,
            memory_pages=asked.memory_pages,
            max_output_bytes=asked.max_output_bytes,
        )


def _publisher(raw: Any, index: int) -> Publisher:
    where = f"trust policy publishers[{index}]"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be an object")
    unknown = set(raw) - {
        "name",
        "public_key",
        "documents",
        "limits",
        "modules",
        "max_module_bytes",
    }
    if unknown:
        raise ConfigError(f"{where} has unknown fields: {', '.join(sorted(unknown))}")
    name = raw.get("name")
    if not isinstance(name, str) or not _PUBLISHER.fullmatch(name):
        raise ConfigError(f"{where}.name must be 1-64 characters from A-Z a-z 0-9 _ . -")
    key = raw.get("public_key")
    if not isinstance(key, str):
        raise ConfigError(f"{where}.public_key must be a base64 string")
    docs = raw.get("documents")
    if not isinstance(docs, dict) or set(docs) - {"read", "write"}:
        raise ConfigError(f"{where}.documents must be an object with read and write patterns")
    patterns: dict[str, tuple[str, ...]] = {}
    for mode in ("read", "write"):
        items = docs.get(mode, [])
        if not isinstance(items, list) or not all(
            isinstance(p, str) and _PATTERN.fullmatch(p) for p in items
        ):
            raise ConfigError(f"{where}.documents.{mode} must be a list of name patterns")
        patterns[mode] = tuple(items)
    modules = raw.get("modules")
    if modules is not None and (
        not isinstance(modules, list)
        or not all(isinstance(p, str) and _MODULE_PATTERN.fullmatch(p) for p in modules)
    ):
        raise ConfigError(
            f"{where}.modules must be a list of module name patterns (a-z 0-9 _ . - and "
            "fnmatch * ? [ ] !)"
        )
    limits = raw.get("limits")
    fields = ("fuel", "wall_time_ms", "memory_pages", "max_output_bytes")
    if not isinstance(limits, dict) or set(limits) != set(fields):
        raise ConfigError(f"{where}.limits must set exactly {', '.join(fields)}")
    for field in fields:
        value = limits[field]
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"{where}.limits.{field} must be a positive integer")
    cap = raw.get("max_module_bytes")
    if cap is not None and (not isinstance(cap, int) or isinstance(cap, bool) or cap < 1):
        raise ConfigError(f"{where}.max_module_bytes must be a positive integer (bytes of wasm)")
    return Publisher(
        name=name,
        public_key=parse_public_key(key),
        read=patterns["read"],
        write=patterns["write"],
        limits=Limits(**limits),
        modules=tuple(modules) if modules is not None else None,
        max_module_bytes=cap,
    )
