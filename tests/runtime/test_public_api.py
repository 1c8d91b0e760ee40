"""The exported names are the ones we mean to export."""

from __future__ import annotations

import edgestate.host
import edgestate.runtime


def test_runtime_exports() -> None:
    assert sorted(edgestate.runtime.__all__) == sorted(
        [
            "Execution",
            "Grant",
            "InvocationResult",
            "Limits",
            "LoadedModule",
            "Manifest",
            "ModuleCache",
            "Publisher",
            "Runtime",
            "RuntimeConfig",
            "TrustPolicy",
            "bundle_paths",
            "read_bundle",
            "generate_key",
            "load_private_key",
            "parse_manifest",
            "raw_public_key",
            "save_private_key",
            "sign_module",
        ]
    )
    for name in edgestate.runtime.__all__:
        assert getattr(edgestate.runtime, name) is not None


def test_host_exports() -> None:
    assert sorted(edgestate.host.__all__) == sorted(
        ["FUNCTIONS", "IMPORT_MODULE", "ErrorCode", "HostFunction", "HostLimits"]
    )
    for name in edgestate.host.__all__:
        assert getattr(edgestate.host, name) is not None
