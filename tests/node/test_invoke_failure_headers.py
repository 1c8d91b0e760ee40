"""A failed invocation's reply carries the guest's own status, as a successful one does."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator

import pytest
import wasmtime

from edgestate.devkit import Bundle, Publisher, make_publisher
from tests.node.api_check import call
from tests.node.conftest import NodeProcess, start_node

# Returns -12 after writing output: a negative status must survive the header too.
_NEGATIVE_STATUS = """
(module
  (import "edgestate" "output_write" (func $w (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "partial")
  (func (export "handle") (result i32)
    (drop (call $w (i32.const 0) (i32.const 7)))
    i32.const -12))
"""
# Fills its memory (4 pages at a time up to the limit), then returns 12.
_FILL_THEN_STATUS = """
(module
  (memory (export "memory") 1)
  (func (export "handle") (result i32)
    (loop $grow (br_if $grow (i32.ne (memory.grow (i32.const 1)) (i32.const -1))))
    i32.const 12))
"""


def _bundle(publisher: Publisher, name: str, wat: str) -> Bundle:
    wasm = bytes(wasmtime.wat2wasm(wat))
    manifest = json.dumps(
        {
            "name": name,
            "version": "1.0.0",
            "documents": {"read": [], "write": []},
            "limits": {
                "fuel": 1_000_000,
                "wall_time_ms": 200,
                "memory_pages": 4,
                "max_output_bytes": 1024,
            },
        }
    ).encode()
    return Bundle(name, wasm, manifest, publisher.sign(wasm, manifest))


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    publisher = make_publisher(tmp_path_factory.mktemp("pub"))
    data = tmp_path_factory.mktemp("node") / "data"
    data.mkdir()
    shutil.copy(publisher.policy_path, data / "trust-policy.json")
    n = start_node(data, "--no-mdns")
    for name, wat in (("negative", _NEGATIVE_STATUS), ("fill", _FILL_THEN_STATUS)):
        b = _bundle(publisher, name, wat)
        n.client.deploy(b.wasm, b.manifest, b.signature)
    yield n
    n.stop()


def _invoke(node: NodeProcess, module: str) -> tuple[int, dict[str, str], str]:
    reply = call(
        node.api, "POST", f"/v1/invoke/{module}", b"", content_type="application/octet-stream"
    )
    return reply.status, reply.headers, reply.json()["error"]["code"]


def test_a_guest_status_reply_names_the_status_in_its_header(node: NodeProcess) -> None:
    status, headers, code = _invoke(node, "negative")
    assert (status, code) == (422, "guest_status")
    assert headers["X-Edgestate-Status"] == "-12"


def test_a_memory_limit_reply_keeps_the_status_the_guest_returned(node: NodeProcess) -> None:
    status, headers, code = _invoke(node, "fill")
    assert (status, code) == (507, "memory_limit")
    assert headers["X-Edgestate-Status"] == "12"
