"""Each module's kept versions and which one is active, as keys of ``_modules``.

Layout (keys of the replicated ``_modules`` document; ``/`` is in no module name):

- ``NAME/v/DIGEST`` - one kept version: the signed bundle (``wasm``, ``manifest``,
  ``signature``, the form :func:`~edgestate.node.bundles.decode_bundle` reads)
  plus who deployed it (``node``, ``at``, ``publisher``) and its deploy ``stamp``.
  DIGEST is of the wasm and manifest bytes, so two builds never share a key.
- ``NAME/a/REPLICA`` - the latest activation (deploy or rollback) made by store
  replica REPLICA: ``op``, the ``entry`` key it activates, ``version``, ``stamp``,
  ``node``, ``at``. Each replica writes only its own key, so concurrent activations
  on two nodes both survive a merge instead of one overwriting the other.
- ``NAME`` - the form before version history: the active bundle alone. It is read
  as a kept version activated at stamp 0, and moved into the layout above by the
  first deploy or rollback of that module (in the same write).

The conflict rule: the active version is that of the activation with the highest
``(stamp, replica)``. A stamp is a hybrid clock in microseconds: ``max(wall clock,
highest stamp of that module this node has seen + 1)``, so an activation made
after seeing another always wins over it (whatever the clocks say), concurrent
ones (a partition) are ordered by wall clock, and equal stamps by replica id.
Every node computes it from the same merged keys, so all converge. If the
winner's entry was dropped concurrently (a bound reached on another side), the
next activation whose entry is kept wins, else the newest kept entry.

Bound: a deploy keeps the newest ``keep`` entries by deploy stamp (the one it
activates always among them) and deletes the rest. Concurrent deploys in a
partition can leave a few more until the next deploy. A deleted entry's bundle
bytes leave the CRDT at once; its key stays as a small tombstone (docs/rollback.md).
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from typing import Any

import msgpack

from edgestate.errors import NoRollbackTargetError, UnknownModuleVersionError
from edgestate.runtime import parse_manifest
from edgestate.store import Delete, Set, Store, WriteOp

log = logging.getLogger(__name__)

SEP = "/"
ENTRY, ACTIVATION = "v", "a"
# Versions each module keeps by default, and at most. Every kept version is a whole
# bundle (up to store.max_value_bytes) replicated to and stored on every node.
DEFAULT_KEEP = 5
MAX_KEEP = 20
_SCAN_PAGE = 1000  # the store's scan page limit


@dataclass(frozen=True, slots=True)
class Entry:
    """One kept version of a module."""

    key: str
    version: str
    wasm_sha256: str
    publisher: str | None
    node: str | None  # the node the deploy was made on (None: from before history)
    at: float | None
    stamp: int
    raw: bytes  # the stored value; decode_bundle reads the bundle out of it
    digest: str  # of the wasm and manifest bytes (bundle_digest), as in entry keys


@dataclass(frozen=True, slots=True)
class Activation:
    """The latest deploy or rollback one replica made."""

    key: str
    replica: int
    op: str  # "deploy", "rollback", or "legacy" (the layout before history)
    entry: str
    version: str
    stamp: int
    node: str | None
    at: float | None


@dataclass(frozen=True, slots=True)
class History:
    """What ``_modules`` holds of one module, and which entry the rule makes active."""

    name: str
    entries: tuple[Entry, ...]  # in deploy order, oldest first
    activations: tuple[Activation, ...]  # winner first
    active: Entry | None
    keys: tuple[str, ...]  # every stored key of the module

    @property
    def activation(self) -> Activation | None:
        """The activation in force (the one naming :attr:`active`, if any)."""
        for act in self.activations:
            if self.active is not None and act.entry == self.active.key:
                return act
        return None

    def max_stamp(self) -> int:
        """The highest stamp any record of this module carries."""
        return max([0, *(e.stamp for e in self.entries), *(a.stamp for a in self.activations)])

    def summary(self) -> dict[str, Any]:
        """The replicated record as JSON-ready fields of a module row (no bundle bytes)."""
        act, active = self.activation, self.active.key if self.active else None
        return {
            "active_version": self.active.version if self.active else None,
            "activation": act.op if act else None,
            "activated_by": act.node if act else None,
            "activated_at": act.at if act else None,
            "history": [
                {
                    "version": e.version,
                    "wasm_sha256": e.wasm_sha256,
                    "publisher": e.publisher,
                    "deployed_by": e.node,
                    "deployed_at": e.at,
                    "active": e.key == active,
                }
                for e in reversed(self.entries)  # newest deploy first
            ],
        }


EMPTY_SUMMARY: dict[str, Any] = History("", (), (), None, ()).summary()


def module_of(key: str) -> str:
    """The module a ``_modules`` key belongs to."""
    return key.split(SEP, 1)[0]


def bundle_digest(wasm: bytes, manifest: bytes) -> str:
    """What tells two builds apart: 96 bits of a digest of the wasm and manifest bytes
    (no accidental collision among a module's few kept versions)."""
    inner = hashlib.sha256(wasm).digest() + hashlib.sha256(manifest).digest()
    return hashlib.sha256(inner).hexdigest()[:24]


def entry_key(name: str, wasm: bytes, manifest: bytes) -> str:
    """The key of a kept version."""
    return f"{name}{SEP}{ENTRY}{SEP}{bundle_digest(wasm, manifest)}"


def next_stamp(history: History) -> int:
    """A stamp above every one of the module this node has seen (module docstring)."""
    return max(time.time_ns() // 1000, history.max_stamp() + 1)


def module_names(store: Store, doc: str) -> set[str]:
    """Every module with a record in ``doc``."""
    names: set[str] = set()
    cursor: str | None = None
    while True:
        page = store.scan(doc, "", cursor, _SCAN_PAGE)
        names.update(module_of(key) for key, _ in page.items)
        cursor = page.cursor
        if cursor is None:
            return names


def read_history(store: Store, doc: str, name: str) -> History:
    """The history of module ``name`` as this node's store holds it now."""
    values: dict[str, bytes] = {}
    cursor: str | None = None
    while True:
        page = store.scan(doc, name + SEP, cursor, _SCAN_PAGE)
        for key, _ in page.items:
            raw = store.get(doc, key)
            if raw is not None:
                values[key] = raw
        cursor = page.cursor
        if cursor is None:
            break
    legacy = store.get(doc, name)
    if legacy is not None:
        values[name] = legacy
    return resolve(name, values)


def resolve(name: str, values: dict[str, bytes]) -> History:
    """Apply the layout and the conflict rule (module docstring) to a module's keys."""
    entries: dict[str, Entry] = {}
    activations: list[Activation] = []
    for key, raw in values.items():
        try:
            if key == name:
                entries[key] = _legacy_entry(key, raw)
                activations.append(
                    Activation(key, 0, "legacy", key, entries[key].version, 0, None, None)
                )
            elif key.startswith(f"{name}{SEP}{ENTRY}{SEP}"):
                entries[key] = _entry(key, raw)
            elif key.startswith(f"{name}{SEP}{ACTIVATION}{SEP}"):
                activations.append(_activation(key, raw))
            else:
                log.warning("_modules key %r is of no known form; ignored", key)
        except (ValueError, TypeError, KeyError, msgpack.UnpackException) as exc:
            # Written by a cluster member, but one bad record must not hide the rest.
            log.warning("_modules record %r is unreadable (%s); ignored", key, exc)
    activations.sort(key=lambda a: (a.stamp, a.replica), reverse=True)
    active = next((entries[a.entry] for a in activations if a.entry in entries), None)
    ordered = tuple(sorted(entries.values(), key=lambda e: (e.stamp, e.key)))
    if active is None and ordered:
        active = ordered[-1]
    return History(name, ordered, tuple(activations), active, tuple(sorted(values)))


def _legacy_entry(key: str, raw: bytes) -> Entry:
    data = msgpack.unpackb(raw)
    wasm, manifest = bytes(data["wasm"]), bytes(data["manifest"])
    version = parse_manifest(manifest).version
    digest = bundle_digest(wasm, manifest)
    return Entry(key, version, hashlib.sha256(wasm).hexdigest(), None, None, None, 0, raw, digest)


def _entry(key: str, raw: bytes) -> Entry:
    data = msgpack.unpackb(raw)
    wasm = bytes(data["wasm"])
    return Entry(
        key,
        str(data["version"]),
        hashlib.sha256(wasm).hexdigest(),
        _opt_str(data.get("publisher")),
        _opt_str(data.get("node")),
        _opt_float(data.get("at")),
        int(data["stamp"]),
        raw,
        key.rsplit(SEP, 1)[1],
    )


def _activation(key: str, raw: bytes) -> Activation:
    data = msgpack.unpackb(raw)
    return Activation(
        key,
        int(key.rsplit(SEP, 1)[1]),
        str(data["op"]),
        str(data["entry"]),
        str(data["version"]),
        int(data["stamp"]),
        _opt_str(data.get("node")),
        _opt_float(data.get("at")),
    )


def _opt_str(value: object) -> str | None:
    return None if value is None else str(value)


def _opt_float(value: object) -> float | None:
    return None if value is None else float(value)  # type: ignore[arg-type]


def pack_entry(
    wasm: bytes,
    manifest: bytes,
    signature: bytes,
    *,
    version: str,
    publisher: str,
    node: str,
    stamp: int,
) -> bytes:
    """The stored form of a kept version."""
    return bytes(
        msgpack.packb(
            {
                "wasm": wasm,
                "manifest": manifest,
                "signature": signature,
                "version": version,
                "publisher": publisher,
                "node": node,
                "at": time.time(),
                "stamp": stamp,
            }
        )
    )


def activation_ops(
    history: History,
    doc: str,
    *,
    entry: str,
    version: str,
    op: str,
    replica: int,
    node: str,
    stamp: int,
) -> list[WriteOp]:
    """Writes that make ``entry`` active: this replica's activation record, and the
    cleanup it allows (other replicas' activations it has seen, all older by
    construction; the layout before history, moved to an entry)."""
    record = msgpack.packb(
        {
            "op": op,
            "entry": entry,
            "version": version,
            "stamp": stamp,
            "node": node,
            "at": time.time(),
        }
    )
    own = f"{history.name}{SEP}{ACTIVATION}{SEP}{replica}"
    ops: list[WriteOp] = [Set(doc, own, bytes(record))]
    # A delete removes only what this node saw: an activation written concurrently
    # elsewhere is a newer value of that key and survives the merge.
    ops += [Delete(doc, a.key) for a in history.activations if a.key not in (own, history.name)]
    return ops


def migrate_legacy(history: History, doc: str) -> list[WriteOp]:
    """Writes moving the pre-history bundle (key ``NAME``) to a kept entry."""
    legacy = next((e for e in history.entries if e.key == history.name), None)
    if legacy is None:
        return []
    data = msgpack.unpackb(legacy.raw)
    wasm, manifest = bytes(data["wasm"]), bytes(data["manifest"])
    key = entry_key(history.name, wasm, manifest)
    ops: list[WriteOp] = [Delete(doc, history.name)]
    if all(e.key != key for e in history.entries):
        value: dict[str, Any] = {
            "wasm": wasm,
            "manifest": manifest,
            "signature": bytes(data["signature"]),
            "version": legacy.version,
            "publisher": None,
            "node": None,
            "at": None,
            "stamp": 0,
        }
        ops.insert(0, Set(doc, key, bytes(msgpack.packb(value))))
    return ops


def prune_ops(history: History, doc: str, *, new_entry: str, keep: int) -> list[WriteOp]:
    """Deletes of the entries past the bound once ``new_entry`` is the newest."""
    # The new entry plus the newest keep - 1 others stay. Every activation this node
    # has seen is replaced by the new one (activation_ops), so none protects an
    # entry; one made concurrently elsewhere may name a dropped entry, and the
    # rule's fallback (module docstring) covers it.
    older = [e for e in history.entries if e.key not in (new_entry, history.name)]
    drop = older[: max(0, len(older) - (keep - 1))]
    return [Delete(doc, e.key) for e in drop]


def rollback_target(history: History, version: str | None) -> Entry:
    """The entry a rollback goes to: ``version``'s newest build, or by default the
    newest entry deployed before the active one."""
    active = history.active
    if active is None:
        raise NoRollbackTargetError(f"module {history.name!r} has no kept versions")
    kept = ", ".join(dict.fromkeys(e.version for e in reversed(history.entries)))
    others = [e for e in history.entries if e.key != active.key]
    if version is None:
        before = [e for e in others if (e.stamp, e.key) < (active.stamp, active.key)]
        if not before:
            raise NoRollbackTargetError(
                f"module {history.name!r}: no kept version was deployed before the active "
                f"{active.version} (kept: {kept}); name one: `edgestate rollback "
                f"{history.name} VERSION`"
            )
        return before[-1]
    matching = [e for e in others if e.version == version]
    if matching:
        return matching[-1]
    if active.version == version:
        raise NoRollbackTargetError(
            f"module {history.name!r}: {version} is already the active version (kept: {kept})"
        )
    raise UnknownModuleVersionError(
        f"module {history.name!r} keeps no version {version!r} (kept: {kept})"
    )
