"""A module row says "active" only once the workers serve that version.

The node's runtime loads a version a moment before its invocation workers do
(the registry tells them, and waits for their acks, in between). A client that
waits for "active" and then invokes must not get a 404 from a worker still
without it (seen once in CI), nor see a new version "active" while the workers
still run the old one. The registry's listeners are what tells the workers, so
the rows are read from inside one: that is the window.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from edgestate.devkit import Bundle, make_publisher
from edgestate.node.metrics import NodeMetrics
from edgestate.node.module_rows import module_rows
from edgestate.node.registry import ModuleRegistry
from edgestate.runtime import Runtime, TrustPolicy
from edgestate.store import Store
from tests.node.rollback_bundles import versioned

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def registry(tmp_path: Path) -> AsyncIterator[tuple[ModuleRegistry, Any]]:
    publisher = make_publisher(tmp_path / "publisher")
    store = Store.open(tmp_path / "store")
    runtime = Runtime(store, TrustPolicy.load(publisher.policy_path))
    reg = ModuleRegistry(store, runtime, NodeMetrics())
    await reg.start()
    try:
        yield reg, publisher
    finally:
        await reg.close()
        runtime.close()
        store.close()


async def _deploy(reg: ModuleRegistry, bundle: Bundle) -> None:
    await reg.deploy(bundle.wasm, bundle.manifest, bundle.signature)


def _row(reg: ModuleRegistry, name: str) -> dict[str, Any] | None:
    rows = [r for r in module_rows(reg.runtime, reg) if r["name"] == name]
    return rows[0] if rows else None


async def test_a_version_is_shown_active_only_once_the_workers_were_told(
    registry: tuple[ModuleRegistry, Any],
) -> None:
    reg, publisher = registry
    seen: list[dict[str, Any] | None] = []

    async def workers_told() -> None:  # where the node waits for its workers' acks
        seen.append(_row(reg, "greeter"))

    reg.listeners.append(workers_told)
    v1 = versioned(publisher, "greeter", "1.0.0")
    await _deploy(reg, v1)
    assert seen[-1] is None  # loaded here, not yet served: not listed
    row = _row(reg, "greeter")
    assert row is not None and (row["state"], row["version"]) == ("active", "1.0.0")
    first_digest = row["wasm_sha256"]

    await _deploy(reg, versioned(publisher, "greeter", "1.1.0"))
    during = seen[-1]  # the workers still run 1.0.0
    assert during is not None
    assert (during["state"], during["version"]) == ("active", "1.0.0")
    assert during["wasm_sha256"] == first_digest
    after = _row(reg, "greeter")
    assert after is not None and (after["state"], after["version"]) == ("active", "1.1.0")
    assert after["wasm_sha256"] != first_digest
