"""Reloading a running node's trust policy (SIGHUP, the admin API, the CLI).

The policy file is read again and checked whole before anything changes: a file
that is missing or fails to parse leaves the running policy in force and the
reload reports why (:class:`~edgestate.errors.PolicyReloadError`). A good one
replaces the runtime's policy, the change is logged (publishers added, removed,
changed), and every module is checked again under it (``ModuleRegistry.recheck``):
stored bundles refused before may load now, and running modules the new policy
no longer allows are unloaded, shown as ``refused`` with the reason in ``modules``.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from edgestate.errors import EdgestateError, PolicyReloadError
from edgestate.node.registry import ModuleRegistry
from edgestate.runtime import Runtime, TrustPolicy

log = logging.getLogger("edgestate.node.trust")


def load_policy_file(path: Path) -> TrustPolicy:
    """The policy at ``path``; none at all trusts nobody (and says so)."""
    if not path.exists():
        log.warning(
            "no trust policy at %s: no publisher is trusted, every module deploy will be "
            "refused (write one, schema in schemas/trust-policy.schema.json, then reload "
            "it with SIGHUP or `edgestate trust reload`)",
            path,
        )
        return TrustPolicy([], source=path)
    return TrustPolicy.load(path)


async def reload_policy(path: Path, runtime: Runtime, registry: ModuleRegistry) -> dict[str, Any]:
    """Replace ``runtime``'s policy with the file at ``path``; a JSON-ready summary."""
    new = await asyncio.to_thread(_read_for_reload, path)
    old, runtime.policy = runtime.policy, new
    added, removed, changed = _diff(old, new)
    activated, unloaded = await registry.recheck()
    summary: dict[str, Any] = {
        "path": str(path),
        "publishers": sorted(p.name for p in new.publishers),
        "added": added,
        "removed": removed,
        "changed": changed,
        "activated": activated,
        "unloaded": unloaded,
    }
    # Info, not a warning: a reload is an operator's deliberate act. The fields carry
    # the whole summary for JSON logs (edgestate.node.logs).
    log.info(
        "trust policy reloaded from %s: %d publishers (added %s, removed %s, changed %s; "
        "modules activated %s, unloaded %s)",
        path,
        len(new.publishers),
        added or "none",
        removed or "none",
        changed or "none",
        activated or "none",
        unloaded or "none",
        extra={"fields": {"event": "policy_reload", **summary}},
    )
    return summary


def _read_for_reload(path: Path) -> TrustPolicy:
    if not path.exists():
        # Unlike at start, a vanished file is far more likely a mistake than a wish
        # to trust nobody: keep the policy in force.
        log.error("trust policy reload: %s does not exist, the running policy stays", path)
        raise PolicyReloadError(f"trust policy {path} does not exist; the running policy stays")
    try:
        return TrustPolicy.load(path)
    except EdgestateError as exc:
        log.error("trust policy reload from %s refused, the running policy stays: %s", path, exc)
        raise PolicyReloadError(
            f"trust policy {path} refused ({exc.code}: {exc}); the running policy stays"
        ) from exc


def _diff(old: TrustPolicy, new: TrustPolicy) -> tuple[list[str], list[str], list[str]]:
    # Publishers are compared by key (what a signature names), shown by name.
    before = {p.public_key: p for p in old.publishers}
    after = {p.public_key: p for p in new.publishers}
    added = sorted(after[k].name for k in after.keys() - before.keys())
    removed = sorted(before[k].name for k in before.keys() - after.keys())
    changed = sorted(after[k].name for k in after.keys() & before.keys() if after[k] != before[k])
    return added, removed, changed
