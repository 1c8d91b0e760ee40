"""Cluster-wide module deployment through the replicated ``_modules`` document.

A signed bundle (wasm, manifest, signature) is stored as one value under the
module's name in the ``_modules`` document, so it replicates through sync like
any other key and a removal is a delete that replicates the same way. Every node
watches that document and loads each bundle through its *own* runtime, which
checks the signature against its own trust policy before compiling. A node whose
policy refuses a bundle keeps running the previous version of that module and
reports why (status, metrics, logs).

The bundle value format and the owner record: :mod:`edgestate.node.bundles`.
Each module keeps its last versions and the record of which one is active
(:mod:`edgestate.node.history`: layout, conflict rule, bound); a deploy, a
rollback and a removal all write there, and every node loads whichever version
the rule makes active.

Module names are owned (``TrustPolicy.check_name``). ``_modules`` is a replicated
last-writer-wins map, so it cannot say who held a name before a write replaced
it: each node keeps its own record of the publisher holding each name (node-local
metadata, never replicated), checks every deploy and every replicated bundle
against it, and forgets a name only when its module is removed.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from edgestate.errors import (
    EdgestateError,
    ManifestError,
    ModuleNotFoundError_,
    ValueTooLargeError,
)
from edgestate.node import history as H
from edgestate.node.bundles import MODULES_DOC as MODULES_DOC  # importable from here as before
from edgestate.node.bundles import OWNERS_KEY, decode_bundle, pack_owners, unpack_owners
from edgestate.node.bundles import encode_bundle as encode_bundle  # likewise
from edgestate.node.metrics import NodeMetrics, module_info
from edgestate.node.versions import check_upgrade
from edgestate.runtime import LoadedModule, Runtime, parse_manifest
from edgestate.runtime.policy import Owner
from edgestate.store import ChangeStream, Delete, Set, Store

log = logging.getLogger(__name__)


@dataclass(slots=True)
class ModuleState:
    """What this node did with the latest bundle of one module."""

    name: str
    state: str  # "active", "refused" or "removed"
    version: str | None = None  # version running now (the previous one if refused)
    offered_version: str | None = None  # version of the latest bundle seen
    # Of the version recorded active: the node's runtime holds a new version a
    # moment before its workers do, and the row must not show it before they serve it.
    publisher: str | None = None
    wasm_sha256: str | None = None
    error: str | None = None
    error_code: str | None = None
    updated: float = 0.0


def _fields(loaded: LoadedModule, event: str) -> dict[str, Any]:
    """Structured fields of a module event's log line (``extra={"fields": ...}``:
    edgestate.node.logs)."""
    return {
        "module": loaded.name,
        "version": loaded.version,
        "sha256": loaded.wasm_sha256,
        "publisher": loaded.publisher,
        "event": event,
    }


class ModuleRegistry:
    """Keeps the runtime's loaded modules in step with the ``_modules`` document."""

    def __init__(
        self,
        store: Store,
        runtime: Runtime,
        metrics: NodeMetrics,
        *,
        keep: int = H.DEFAULT_KEEP,
        node_name: Callable[[], str] = lambda: "?",
    ) -> None:
        self.store = store
        self.keep = keep  # versions kept per module (history.py)
        self.node_name = node_name  # recorded with each deploy and rollback
        self.runtime = runtime
        self.metrics = metrics
        self.states: dict[str, ModuleState] = {}
        # Each module's replicated record without its bundles, for the module rows:
        # a listing must not decode every kept bundle (megabytes each) per request.
        self.summaries: dict[str, dict[str, Any]] = {}
        self._task: asyncio.Task[None] | None = None
        self._saved_owners: dict[str, Owner] = {}
        # (digest, wasm, manifest, signature) of each module running here, and who
        # is told after every change (the node's invocation workers).
        self.running: dict[str, tuple[str, bytes, bytes, bytes]] = {}
        self.listeners: list[Callable[[], Awaitable[None]]] = []
        metrics.add_collector(
            lambda: [module_info(runtime.modules(), {n: s.state for n, s in self.states.items()})]
        )

    async def _changed(self) -> None:
        for listener in list(self.listeners):
            await listener()

    async def start(self) -> None:
        """Load every stored bundle, then follow changes until :meth:`close`."""
        await self.store.acreate_document(MODULES_DOC)
        self._saved_owners = unpack_owners(self.store.get_local(OWNERS_KEY))
        self.runtime.owners.update(self._saved_owners)
        stream = self.store.changes(docs=(MODULES_DOC,))
        for name in sorted(H.module_names(self.store, MODULES_DOC)):
            await self._sync_safely(name)
        self._task = asyncio.create_task(self._follow(stream), name="edgestate-modules")

    async def close(self) -> None:
        """Stop following changes."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task])  # not `await task`: keep our own cancellation
            self._task = None

    async def _follow(self, stream: ChangeStream) -> None:
        try:
            async for event in stream:
                if stream.reset_overflow():
                    # Events were dropped: compare everything, removals included.
                    stored = H.module_names(self.store, MODULES_DOC)
                    for name in stored | {m.name for m in self.runtime.modules()}:
                        await self._sync_safely(name)
                if event.doc == MODULES_DOC:
                    for name in sorted({H.module_of(key) for key in event.keys}):
                        await self._sync_safely(name)
        finally:
            stream.close()

    async def _sync_safely(self, name: str) -> None:
        # One bad entry must not stop this node from following every other one.
        told = False
        try:
            told = await self._sync(name)
        except Exception:
            log.exception("could not apply the replicated state of module %r", name)
        if not told:  # an activation told the workers already, before showing it
            await self._changed()

    def history(self, name: str) -> H.History:
        """Module ``name``'s kept versions and the active one, as stored here now."""
        history = H.read_history(self.store, MODULES_DOC, name)
        if history.keys:
            self.summaries[name] = history.summary()
        else:
            self.summaries.pop(name, None)
        return history

    async def deploy(
        self, wasm: bytes, manifest: bytes, signature: bytes, *, allow_downgrade: bool = False
    ) -> LoadedModule:
        """Verify and load a bundle here, then store it so it replicates.

        A bundle this node refuses is never stored, so a bad deploy does not
        reach the cluster from here. A version lower than the active one, or the
        active version with other bytes, is refused unless ``allow_downgrade``
        (:func:`~edgestate.node.versions.check_upgrade`).
        """
        # Signature, trust and ownership first: an untrusted or tampered bundle is
        # refused as such, whatever version it claims.
        parsed, publisher = await asyncio.to_thread(self.runtime.verify, wasm, manifest, signature)
        history = self.history(parsed.name)
        key = H.entry_key(parsed.name, wasm, manifest)
        active = history.active
        digest = H.bundle_digest(wasm, manifest)
        if not allow_downgrade and active is not None and self._acceptable(active):
            check_upgrade(parsed.name, parsed.version, digest, active.version, active.digest)
        stamp = H.next_stamp(history)
        node = self.node_name()
        entry = H.pack_entry(
            wasm,
            manifest,
            signature,
            version=parsed.version,
            publisher=publisher,
            node=node,
            stamp=stamp,
        )
        limit = self.store.config.max_value_bytes
        if len(entry) > limit:
            # Checked before loading: a module that cannot replicate must not run here.
            raise ValueTooLargeError(
                f"module bundle is {len(entry)} bytes as stored; bundles replicate as one "
                f"value, at most {limit} bytes (store.max_value_bytes)"
            )
        # Verifying and compiling can take tens of ms for a large module that is
        # not in the cache yet: off the loop, so invocations keep being served.
        loaded = await asyncio.to_thread(self.runtime.load, wasm, manifest, signature)
        self.running[loaded.name] = (loaded.wasm_sha256, wasm, manifest, signature)
        await self._create_documents(parsed.writes)
        if active is None or active.digest != digest:
            ops = H.migrate_legacy(history, MODULES_DOC)
            ops.append(Set(MODULES_DOC, key, entry))
            ops += H.activation_ops(
                history,
                MODULES_DOC,
                entry=key,
                version=loaded.version,
                op="deploy",
                replica=self.store.replica_id,
                node=node,
                stamp=stamp,
            )
            ops += H.prune_ops(history, MODULES_DOC, new_entry=key, keep=self.keep)
            await self.store.abatch(ops)
            self.history(loaded.name)  # the rows show it before the change event arrives
        await self._save_owners()
        # Workers first: "active" is only shown once every worker serves it.
        await self._changed()
        self._record(loaded.name, "active", loaded.version, loaded.version, loaded=loaded)
        self.metrics.deploys.labels("active").inc()
        log.info(
            "module %r version %s deployed",
            loaded.name,
            loaded.version,
            extra={"fields": _fields(loaded, "deploy")},
        )
        return loaded

    def _acceptable(self, entry: H.Entry) -> bool:
        # A record this node refuses (an untrusted publisher, a name taken over) is
        # no version to protect: the owner's redeploy must be able to replace it.
        try:
            self.runtime.verify(*decode_bundle(entry.raw))
        except EdgestateError:
            return False
        return True

    async def rollback(self, name: str, version: str | None = None) -> LoadedModule:
        """Make a kept version of ``name`` active again, cluster-wide.

        ``version`` None: the version deployed before the active one. The bundle is
        verified and loaded here first, under this node's trust policy as it is
        now: a version whose publisher was since removed cannot come back.
        """
        history = self.history(name)
        if not history.entries:
            raise ModuleNotFoundError_(f"no deployed module {name!r}")
        target = H.rollback_target(history, version)
        wasm, manifest, signature = decode_bundle(target.raw)
        loaded = await asyncio.to_thread(self.runtime.load, wasm, manifest, signature)
        self.running[name] = (loaded.wasm_sha256, wasm, manifest, signature)
        await self._create_documents(parse_manifest(manifest).writes)
        stamp, key = H.next_stamp(history), target.key
        ops = H.migrate_legacy(history, MODULES_DOC)
        if key == name:  # rolling back to the pre-history bundle: it moves to an entry
            key = H.entry_key(name, wasm, manifest)
        ops += H.activation_ops(
            history,
            MODULES_DOC,
            entry=key,
            version=loaded.version,
            op="rollback",
            replica=self.store.replica_id,
            node=self.node_name(),
            stamp=stamp,
        )
        await self.store.abatch(ops)
        self.history(name)  # the rows show it before the change event arrives
        await self._save_owners()
        await self._changed()  # workers first, as for a deploy
        self._record(name, "active", loaded.version, loaded.version, loaded=loaded)
        was = history.active.version if history.active else None
        log.info(
            "module %r rolled back to %s (was %s) cluster-wide",
            name,
            loaded.version,
            was,
            extra={"fields": {**_fields(loaded, "rollback"), "previous": was}},
        )
        return loaded

    async def remove(self, name: str) -> None:
        """Remove a module and its kept versions cluster-wide (ModuleNotFoundError_ if
        unknown)."""
        keys = self.history(name).keys
        if not keys:
            self.runtime.module(name)  # raises ModuleNotFoundError_
        await self.store.abatch([Delete(MODULES_DOC, key) for key in keys])
        if not await self._sync(name):
            await self._changed()

    async def recheck(self) -> tuple[list[str], list[str]]:
        """Check every module against the runtime's (new) policy: (activated, unloaded).

        A stored bundle this node refused may now load; a running module the
        policy no longer allows is unloaded (its row says why) rather than kept
        running under rules that no longer hold.
        """
        before = {m.name for m in self.runtime.modules()}
        stored = H.module_names(self.store, MODULES_DOC)
        for name in sorted(stored | before):
            try:
                await self._sync(name, recheck=True)
            except Exception:
                log.exception("could not recheck module %r", name)
        after = {m.name for m in self.runtime.modules()}
        await self._changed()
        return sorted(after - before), sorted(before - after)

    async def _sync(self, name: str, *, recheck: bool = False) -> bool:
        """Bring ``name`` here to its replicated state; True if the listeners were told."""
        active = self.history(name).active
        raw = active.raw if active is not None else None
        if raw is None:
            try:
                self.runtime.unload(name)
            except EdgestateError:
                pass
            self.running.pop(name, None)
            self.runtime.release(name)
            await self._save_owners()
            previous = self.states.get(name)
            if previous is not None and previous.state != "removed":
                # Once per removal: the removal's own change event comes back here.
                log.info(
                    "module %r removed", name, extra={"fields": {"module": name, "event": "remove"}}
                )
            self._record(name, "removed", None, None)
            return False
        running = self._running(name)
        current = running.version if running else None
        offered: str | None = None
        try:
            wasm, manifest, signature = decode_bundle(raw)
            parsed = parse_manifest(manifest)
            offered = parsed.version
            if parsed.name != name:
                raise ManifestError(f"bundle stored under {name!r} names itself {parsed.name!r}")
            if (
                not recheck
                and running is not None
                and running.version == offered
                and running.wasm_sha256 == hashlib.sha256(wasm).hexdigest()
            ):
                return False  # already running exactly this (e.g. the deploy that stored it)
            loaded = await asyncio.to_thread(self.runtime.load, wasm, manifest, signature)
            self.running[name] = (loaded.wasm_sha256, wasm, manifest, signature)
            await self._create_documents(parsed.writes)
        except EdgestateError as exc:
            if recheck and running is not None:
                # The policy changed under a running module: what it allowed no
                # longer holds, so the module stops rather than keeps its grant.
                self.runtime.unload(name)
                self.running.pop(name, None)
                log.warning(
                    "module %r version %s unloaded: the reloaded trust policy refuses it: %s",
                    name,
                    current,
                    exc,
                )
                self._record(name, "refused", None, offered, exc)
                return False
            log.warning(
                "module %r version %s refused by this node, keeping %s: %s",
                name,
                offered,
                current or "nothing",
                exc,
            )
            self._record(name, "refused", current, offered, exc)
            if not recheck:  # a recheck is not a deploy
                self.metrics.deploys.labels("refused").inc()
            return False
        await self._save_owners()
        # A replicated version is shown "active" only once the workers serve it
        # (a client that waits for "active" and then invokes must not get a 404).
        await self._changed()
        self._record(name, "active", loaded.version, loaded.version, loaded=loaded)
        if not recheck:
            self.metrics.deploys.labels("active").inc()
        # A rollout: a version that reached this node (replicated, stored at start,
        # or allowed by a reloaded policy) is the one it runs from now on.
        log.info(
            "module %r version %s active (was %s)",
            name,
            loaded.version,
            current or "not running",
            extra={
                "fields": {
                    **_fields(loaded, "recheck" if recheck else "rollout"),
                    "previous": current,
                }
            },
        )
        return True

    async def _save_owners(self) -> None:
        # Durable before the deploy is acknowledged: a restart must not forget
        # who holds a name, or a replicated takeover would load at start.
        owners = dict(self.runtime.owners)
        if owners != self._saved_owners:
            await self.store.aput_local(OWNERS_KEY, pack_owners(owners))
            self._saved_owners = owners

    async def _create_documents(self, names: Iterable[str]) -> None:
        # A module's writable documents exist wherever it runs, so its first
        # invocation does not fail on a document nobody created yet.
        for doc in names:
            if not self.store.has_document(doc):
                await self.store.acreate_document(doc)

    def _running(self, name: str) -> LoadedModule | None:
        try:
            return self.runtime.module(name)
        except EdgestateError:
            return None

    def _record(
        self,
        name: str,
        state: str,
        version: str | None,
        offered: str | None,
        error: EdgestateError | None = None,
        *,
        loaded: LoadedModule | None = None,
    ) -> None:
        self.states[name] = ModuleState(
            name=name,
            state=state,
            version=version,
            offered_version=offered,
            publisher=loaded.publisher if loaded else None,
            wasm_sha256=loaded.wasm_sha256 if loaded else None,
            error=str(error) if error else None,
            error_code=error.code if error else None,
            updated=time.time(),
        )
