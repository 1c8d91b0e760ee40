"""Deploy and invoke signed modules on real node subprocesses; roll-out across nodes."""

from __future__ import annotations

import base64
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import wasmtime
from prometheus_client.parser import text_string_to_metric_families

from edgestate.devkit import Bundle, Publisher, example_bundle, make_publisher
from tests.node.api_check import call
from tests.node.conftest import NodeProcess, eventually, start_node

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "build" / "guest-wasm"
WAT = REPO / "tests" / "runtime" / "wat"


def deploy(node: NodeProcess, bundle: Bundle) -> Any:
    body = json.dumps(
        {
            "wasm": base64.b64encode(bundle.wasm).decode(),
            "manifest": base64.b64encode(bundle.manifest).decode(),
            "signature": base64.b64encode(bundle.signature).decode(),
        }
    ).encode()
    return call(node.api, "POST", "/v1/admin/modules", body, token=node.token)


def wat_bundle(publisher: Publisher, name: str, wat_file: str, **limits: int) -> Bundle:
    wasm = wasmtime.wat2wasm((WAT / f"{wat_file}.wat").read_text())
    manifest = json.dumps(
        {
            "name": name,
            "version": "1.0.0",
            "documents": {"read": [], "write": ["app"]},
            "limits": {
                "fuel": 1_000_000,
                "wall_time_ms": 200,
                "memory_pages": 4,
                "max_output_bytes": 1024,
                **limits,
            },
        }
    ).encode()
    return Bundle(name, wasm, manifest, publisher.sign(wasm, manifest))


@pytest.fixture(scope="module")
def publisher(tmp_path_factory: pytest.TempPathFactory) -> Publisher:
    return make_publisher(tmp_path_factory.mktemp("publisher"))


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory, publisher: Publisher) -> Iterator[NodeProcess]:
    data = tmp_path_factory.mktemp("modnode") / "data"
    data.mkdir()
    shutil.copy(publisher.policy_path, data / "trust-policy.json")
    n = start_node(data, "--no-mdns")
    yield n
    assert n.stop() == 0, n.log()


def invoke(node: NodeProcess, module: str, body: bytes) -> Any:
    return call(
        node.api, "POST", f"/v1/invoke/{module}", body, content_type="application/octet-stream"
    )


def test_deploy_and_invoke_examples(node: NodeProcess, publisher: Publisher) -> None:
    for name in ("counter", "session_store", "kv_echo"):
        reply = deploy(node, example_bundle(name, publisher, BUILD))
        assert reply.status == 201, reply.body
    modules = call(node.api, "GET", "/v1/admin/modules", token=node.token).json()["modules"]
    assert {m["name"]: m["state"] for m in modules} == {
        "counter": "active",
        "session-store": "active",
        "kv-echo": "active",
    }
    first = invoke(node, "counter", b"visits")
    second = invoke(node, "counter", b"visits")
    assert first.status == second.status == 200
    assert int(second.body) == int(first.body) + 1
    assert float(second.headers["X-Edgestate-Instantiate-Us"]) > 0
    session = invoke(node, "session-store", b"s42")
    assert session.status == 200 and session.body.startswith(b"hits=1")
    got = call(node.api, "GET", "/v1/admin/docs/sessions/keys/s42:hits", token=node.token).json()
    assert got["counter"] == 1
    metrics = call(node.api, "GET", "/metrics").body.decode()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(metrics)
        for s in f.samples
    }
    assert samples[("edgestate_invocations_total", (("module", "counter"), ("outcome", "ok")))] >= 2
    assert samples[("edgestate_cold_start_seconds_count", (("module", "counter"),))] >= 2
    # counter: doc_open, input_len/read, kv_incr, output_write per invocation
    assert samples[("edgestate_host_calls_total", (("module", "counter"),))] >= 2 * 3
    assert int(second.headers["X-Edgestate-Host-Calls"]) >= 3


@pytest.mark.parametrize(
    ("wat_file", "limits", "status", "code"),
    [
        ("infinite_loop", {}, 503, "out_of_fuel"),
        ("unreachable", {}, 500, "trap"),
        ("oob_pointer", {}, 500, "trap"),
        ("big_output", {"max_output_bytes": 16}, 502, "output_too_large"),
        ("status", {}, 422, "guest_status"),
        ("writes_then_trap", {}, 500, "trap"),
    ],
)
def test_hostile_modules_fail_cleanly_and_the_node_keeps_serving(
    node: NodeProcess,
    publisher: Publisher,
    wat_file: str,
    limits: dict[str, int],
    status: int,
    code: str,
) -> None:
    name = f"hostile-{wat_file.replace('_', '-')}"
    assert deploy(node, wat_bundle(publisher, name, wat_file, **limits)).status == 201
    reply = invoke(node, name, b"x")
    assert reply.status == status, reply.body
    assert reply.json()["error"]["code"] == code
    assert call(node.api, "GET", "/readyz").status == 200


def test_failed_invocation_writes_nothing(node: NodeProcess, publisher: Publisher) -> None:
    deploy(node, wat_bundle(publisher, "wtt", "writes_then_trap"))
    invoke(node, "wtt", b"")
    scan = call(node.api, "GET", "/v1/admin/docs/app/scan", token=node.token).json()
    assert scan["items"] == []


def test_refused_bundles(node: NodeProcess, publisher: Publisher, tmp_path: Path) -> None:
    stranger = make_publisher(tmp_path / "stranger")
    untrusted = deploy(node, example_bundle("counter", stranger, BUILD))
    assert untrusted.status == 403 and untrusted.json()["error"]["code"] == "untrusted_publisher"
    greedy = wat_bundle(publisher, "greedy", "noop", memory_pages=100_000)
    refused = deploy(node, greedy)
    assert refused.status in (403, 422) and refused.json()["error"]["code"] in (
        "policy_violation",
        "invalid_manifest",
    )
    good = example_bundle("counter", publisher, BUILD)
    tampered = Bundle(good.name, good.wasm + b"\x00", good.manifest, good.signature)
    assert deploy(node, tampered).json()["error"]["code"] == "bad_signature"


def test_rollout_across_nodes_and_a_refusing_policy(tmp_path: Path, publisher: Publisher) -> None:
    nodes: list[NodeProcess] = []
    try:
        a_data, b_data, c_data = (tmp_path / n for n in ("a", "b", "c"))
        for d in (a_data, b_data):
            d.mkdir()
            shutil.copy(publisher.policy_path, d / "trust-policy.json")
        c_data.mkdir()  # c trusts nobody: it must refuse the bundle and say why
        a = start_node(a_data, "--no-mdns")
        nodes.append(a)
        b = start_node(b_data, "--no-mdns", "--peer", f"127.0.0.1:{a.sync_port}")
        nodes.append(b)
        c = start_node(c_data, "--no-mdns", "--peer", f"127.0.0.1:{a.sync_port}")
        nodes.append(c)
        assert deploy(a, example_bundle("counter", publisher, BUILD)).status == 201

        def active_on(n: NodeProcess) -> bool:
            mods = call(n.api, "GET", "/v1/admin/modules", token=n.token).json()["modules"]
            return any(m["name"] == "counter" and m["state"] == "active" for m in mods)

        eventually(lambda: active_on(b))
        assert invoke(b, "counter", b"hits").status == 200
        assert invoke(a, "counter", b"hits").status == 200

        def total_on(n: NodeProcess) -> int:
            r = call(n.api, "GET", "/v1/admin/docs/counters/keys/hits", token=n.token)
            return int(r.json()["counter"]) if r.status == 200 else 0

        eventually(lambda: total_on(a) == 2 and total_on(b) == 2)

        def peers_of_a() -> Any:
            peers = call(a.api, "GET", "/v1/admin/peers", token=a.token).json()["peers"]
            return peers if {p["node_id"] for p in peers} >= {b.node_id, c.node_id} else None

        # c dials a on its own schedule: under load it may not be linked yet.
        peers = eventually(peers_of_a, what="b and c linked to a")
        assert any(p["updates_out"] > 0 and p["bytes_in"] > 0 for p in peers)
        metrics = call(a.api, "GET", "/metrics").body.decode()
        per_peer = {
            (s.labels["node_id"], s.labels["direction"]): s.value
            for f in text_string_to_metric_families(metrics)
            for s in f.samples
            if s.name == "edgestate_peer_sync_bytes_total"
        }
        assert per_peer.get((b.node_id, "out"), 0) > 0, (per_peer, peers)
        assert per_peer[(b.node_id, "in")] > 0

        def refused_on_c() -> Any:
            st = call(c.api, "GET", "/v1/admin/status", token=c.token).json()
            return st["refused_modules"]

        refused = eventually(refused_on_c)
        assert refused[0]["name"] == "counter"
        assert refused[0]["error_code"] == "untrusted_publisher"
        assert invoke(c, "counter", b"hits").json()["error"]["code"] == "unknown_module"
        assert "refused by this node" in c.log()

        call(a.api, "DELETE", "/v1/admin/modules/counter", token=a.token)
        eventually(lambda: not active_on(b))
    finally:
        for n in nodes:
            n.stop()


def test_a_bundle_too_large_to_replicate_is_refused_before_loading(
    node: NodeProcess, publisher: Publisher
) -> None:
    data = "\\00" * (1100 * 1024)
    wasm = wasmtime.wat2wasm(
        f'(module (memory (export "memory") 20) (data (i32.const 0) "{data}")'
        ' (func (export "handle") (result i32) i32.const 0))'
    )
    manifest = json.dumps(
        {
            "name": "huge",
            "version": "1.0.0",
            "documents": {"read": [], "write": ["app"]},
            "limits": {"fuel": 1000, "memory_pages": 32, "max_output_bytes": 16},
        }
    ).encode()
    reply = deploy(node, Bundle("huge", wasm, manifest, publisher.sign(wasm, manifest)))
    assert reply.status == 413 and reply.json()["error"]["code"] == "value_too_large"
    assert invoke(node, "huge", b"").json()["error"]["code"] == "unknown_module"


def test_cli_deploy_and_undeploy(node: NodeProcess, publisher: Publisher, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from edgestate.cli.main import cli

    bundle = example_bundle("kv_echo", publisher, BUILD)
    (tmp_path / "echo.wasm").write_bytes(bundle.wasm)
    (tmp_path / "echo.manifest.json").write_bytes(
        bundle.manifest.replace(b'"kv-echo"', b'"cli-echo"')
    )
    manifest = (tmp_path / "echo.manifest.json").read_bytes()
    (tmp_path / "echo.sig").write_bytes(publisher.sign(bundle.wasm, manifest))
    target = ["--node", node.api, "--token", node.token]
    result = CliRunner().invoke(cli, ["deploy", str(tmp_path / "echo.wasm"), *target, "--json"])
    assert result.exit_code == 0, result.output + result.stderr
    assert json.loads(result.stdout)["name"] == "cli-echo"
    assert invoke(node, "cli-echo", b"x=y").body == b"y"
    unsigned = tmp_path / "other.wasm"
    unsigned.write_bytes(bundle.wasm)
    missing = CliRunner().invoke(cli, ["deploy", str(unsigned), *target])
    assert missing.exit_code == 1 and "is unsigned" in missing.stderr
    result = CliRunner().invoke(cli, ["undeploy", "cli-echo", "--yes", *target])
    assert result.exit_code == 0, result.stderr
    assert invoke(node, "cli-echo", b"x").json()["error"]["code"] == "unknown_module"
