"""doc_open with a name no document can have is INVALID_ARGUMENT (the store's one
name rule), not ACCESS_DENIED; a manifest cannot grant the node's own documents."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edgestate.errors import ManifestError
from edgestate.host.abi import ErrorCode
from edgestate.runtime import Runtime

from .helpers import deploy, manifest, run, wat

pytestmark = pytest.mark.timeout(30)

NAME = 400  # offset of the probed names


@pytest.mark.parametrize(
    "name", [b"", b"x" * 65, b"..", b".", b"CON", b"nul.txt", b"a/b"], ids=repr
)
def test_doc_open_of_an_invalid_name_is_invalid_argument(
    runtime: Runtime, key: Ed25519PrivateKey, name: bytes
) -> None:
    results, _, _ = run(runtime, key, [("doc_open", NAME, len(name))], data={NAME: name or b"-"})
    assert results == [ErrorCode.INVALID_ARGUMENT]


def test_doc_open_of_a_valid_ungranted_name_is_still_access_denied(
    runtime: Runtime, key: Ed25519PrivateKey
) -> None:
    results, _, _ = run(runtime, key, [("doc_open", NAME, 8)], data={NAME: b"_modules"})
    assert results == [ErrorCode.ACCESS_DENIED]


@pytest.mark.parametrize("grant", ["reads", "writes"])
def test_a_manifest_asking_for_a_system_document_is_refused_at_load(
    runtime: Runtime, key: Ed25519PrivateKey, grant: str
) -> None:
    with pytest.raises(ManifestError, match="node's own"):
        deploy(runtime, key, wat("noop"), manifest("greedy", **{grant: ("_modules",)}))
