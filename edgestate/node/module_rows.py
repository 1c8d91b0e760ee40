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
        rows.append(
            {
                "name": name,
                "state": state.state if state else "active",
                "version": mod.version if mod else None,
                "offered_version": state.offered_version if state else None,
                "publisher": mod.publisher if mod else None,
                "wasm_sha256": mod.wasm_sha256 if mod else None,
                "error": state.error if state else None,
                "error_code": state.error_code if state else None,
                # The cluster's record: which kept version is active, who made it so.
                **registry.summaries.get(name, EMPTY_SUMMARY),
            }
        )
    return rows
