"""The rows of ``GET /v1/admin/modules``: this node's verdict on each module, and
the module's replicated version history (schemas/openapi.yaml, ModuleRow)."""

from __future__ import annotations

from typing import Any

from edgestate.node.history import EMPTY_SUMMARY
from edgestate.node.registry import ModuleRegistry
from edgestate.runtime import Runtime


def module_rows(runtime: Runtime, registry: ModuleRegistry) -> list[dict[str, Any]]:
    """Deployed modules, this node's verdict on each and their history (JSON-ready)."""
    loaded = {m.name: m for m in runtime.modules()}
    rows = []
    for name in sorted(set(loaded) | set(registry.states)):
        state = registry.states.get(name)
        mod = loaded.get(name)
        if state is None:
            # Loaded here, its workers not yet told: not shown until they serve it
            # (a client that waits for "active" and then invokes must not get a 404).
            continue
        if state.state == "active":
            # What the workers serve, not what this node's runtime took a moment ago.
            version, publisher, digest = state.version, state.publisher, state.wasm_sha256
        else:
            version = mod.version if mod else None
            publisher, digest = (mod.publisher, mod.wasm_sha256) if mod else (None, None)
        rows.append(
            {
                "name": name,
                "state": state.state,
                "version": version,
                "offered_version": state.offered_version,
                "publisher": publisher,
                "wasm_sha256": digest,
                "error": state.error,
                "error_code": state.error_code,
                # The cluster's record: which kept version is active, who made it so.
                **registry.summaries.get(name, EMPTY_SUMMARY),
            }
        )
    return rows
