"""Admin JSON bodies and the manifests inside them are read strictly by a real node."""

from __future__ import annotations

import base64
import json
import shutil
from collections.abc import Iterator

import pytest

from edgestate.devkit import Bundle, Publisher, make_publisher
from tests.node.api_check import call
from tests.node.conftest import NodeProcess, start_node
from tests.node.test_modules_e2e import deploy, wat_bundle


@pytest.fixture(scope="module")
def publisher(tmp_path_factory: pytest.TempPathFactory) -> Publisher:
    return make_publisher(tmp_path_factory.mktemp("publisher"))


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory, publisher: Publisher) -> Iterator[NodeProcess]:
    data = tmp_path_factory.mktemp("strictnode") / "data"
    data.mkdir()
    shutil.copy(publisher.policy_path, data / "trust-policy.json")
    n = start_node(data, "--no-mdns")
    yield n
    assert n.stop() == 0, n.log()


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def test_deploy_body_with_a_repeated_field_is_refused(
    node: NodeProcess, publisher: Publisher
) -> None:
    good = wat_bundle(publisher, "strict-a", "noop")
    body = (
        f'{{"wasm": "{_b64(good.wasm)}", "manifest": "{_b64(good.manifest)}", '
        f'"signature": "{_b64(good.signature)}", "wasm": "{_b64(b"other")}"}}'
    ).encode()
    reply = call(node.api, "POST", "/v1/admin/modules", body, token=node.token)
    assert reply.status == 400, reply.body
    error = reply.json()["error"]
    assert error["code"] == "duplicate_json_key" and "'wasm'" in error["message"]
    assert deploy(node, good).status == 201  # and the node carries on


def test_signed_manifest_with_two_names_is_refused(node: NodeProcess, publisher: Publisher) -> None:
    plain = wat_bundle(publisher, "strict-b", "noop")
    two_names = plain.manifest[:-1] + b', "name": "strict-evil"}'
    assert json.loads(two_names)["name"] == "strict-evil"
    bundle = Bundle("strict-b", plain.wasm, two_names, publisher.sign(plain.wasm, two_names))
    reply = deploy(node, bundle)
    assert reply.status == 400, reply.body
    assert reply.json()["error"]["code"] == "duplicate_json_key"
    assert "manifest repeats the key 'name'" in reply.json()["error"]["message"]
    names = {m["name"] for m in node.client.modules()}
    assert "strict-evil" not in names and "strict-b" not in names


def test_batch_body_with_nan_or_a_repeated_key_is_refused(node: NodeProcess) -> None:
    node.client.batch("strict", [], create=True)
    path = "/v1/admin/docs/strict/batch"
    nan = b'{"ops": [{"op": "incr", "key": "n", "delta": NaN}]}'
    reply = call(node.api, "POST", path, nan, token=node.token)
    assert reply.status == 400 and reply.json()["error"]["code"] == "non_finite_json_number"
    twice = b'{"ops": [{"op": "set", "key": "a", "value": "1", "key": "b"}]}'
    reply = call(node.api, "POST", path, twice, token=node.token)
    assert reply.status == 400 and reply.json()["error"]["code"] == "duplicate_json_key"
    assert (
        call(node.api, "GET", "/v1/admin/docs/strict/scan", token=node.token).json()["items"] == []
    )
    not_json = call(node.api, "POST", path, b"{", token=node.token)
    assert not_json.status == 400 and not_json.json()["error"]["code"] == "bad_request"
