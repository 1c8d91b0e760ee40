"""Version history, the downgrade rule and rollback on real node subprocesses.

Every API reply is checked against schemas/openapi.yaml (``call``). Nodes run
on 127.0.0.1 with mDNS off; a partition is a node restarted without its peer.
"""

from __future__ import annotations

import base64
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edgestate.devkit import Bundle, Publisher, make_publisher
from edgestate.node.registry import MODULES_DOC, encode_bundle
from edgestate.node.versions import version_key
from edgestate.store import Delete, Set, Store
from tests.node.api_check import Reply, call
from tests.node.conftest import NodeProcess, eventually, start_node
from tests.node.rollback_bundles import versioned
from tests.node.test_modules_e2e import deploy, invoke
from tests.node.test_workers import every_worker


@pytest.fixture(scope="module")
def publisher(tmp_path_factory: pytest.TempPathFactory) -> Publisher:
    return make_publisher(tmp_path_factory.mktemp("publisher"))


def node_dir(root: Path, publisher: Publisher, history: int | None = None) -> Path:
    root.mkdir(parents=True)
    shutil.copy(publisher.policy_path, root / "trust-policy.json")
    if history is not None:
        (root.parent / f"{root.name}.toml").write_text(f"module_history = {history}\n")
    return root


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory, publisher: Publisher) -> Iterator[NodeProcess]:
    data = node_dir(tmp_path_factory.mktemp("rollback") / "data", publisher, history=3)
    n = start_node(data, "--no-mdns", config=data.parent / "data.toml")
    try:
        yield n
    finally:
        assert n.stop() == 0, n.log()


def deploy_ok(node: NodeProcess, bundle: Bundle, **query: str) -> Any:
    reply = deploy_q(node, bundle, query)
    assert reply.status == 201, reply.body
    return reply.json()


def deploy_q(node: NodeProcess, bundle: Bundle, query: dict[str, str]) -> Reply:
    if not query:
        return deploy(node, bundle)
    body = json.dumps(
        {
            "wasm": base64.b64encode(bundle.wasm).decode(),
            "manifest": base64.b64encode(bundle.manifest).decode(),
            "signature": base64.b64encode(bundle.signature).decode(),
        }
    ).encode()
    return call(node.api, "POST", "/v1/admin/modules", body, token=node.token, query=query)


def rollback(node: NodeProcess, name: str, body: Any) -> Reply:
    raw = json.dumps(body).encode() if not isinstance(body, bytes) else body
    return call(node.api, "POST", f"/v1/admin/modules/{name}/rollback", raw, token=node.token)


def row(node: NodeProcess, name: str) -> dict[str, Any] | None:
    rows = call(node.api, "GET", "/v1/admin/modules", token=node.token).json()["modules"]
    return next((r for r in rows if r["name"] == name), None)


def serves(node: NodeProcess, name: str) -> str:
    reply = invoke(node, name, b"")
    return reply.body.decode() if reply.status == 200 else f"HTTP {reply.status}"


def error_code(reply: Reply) -> str:
    return str(reply.json()["error"]["code"])


def test_semver_precedence() -> None:
    ordered = ["0.9.0", "1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta.2"]
    ordered += ["1.0.0-beta.11", "1.0.0-rc.1", "1.0.0", "1.0.1", "1.2.0", "1.10.0", "10.0.0"]
    assert sorted(ordered, key=version_key) == ordered
    assert version_key("1.0.0+build.1") == version_key("1.0.0+build.2") == version_key("1.0.0")


def test_a_downgrade_is_refused_unless_allowed(node: NodeProcess, publisher: Publisher) -> None:
    deploy_ok(node, versioned(publisher, "down", "0.1.0"))
    deploy_ok(node, versioned(publisher, "down", "0.2.0"))
    older = deploy(node, versioned(publisher, "down", "0.1.0"))
    assert older.status == 409 and error_code(older) == "module_downgrade", older.body
    assert "--allow-downgrade" in older.json()["error"]["message"]
    pre = deploy(node, versioned(publisher, "down", "0.2.0-rc.1"))
    assert pre.status == 409 and error_code(pre) == "module_downgrade"
    rebuilt = deploy(node, versioned(publisher, "down", "0.2.0", build="other"))
    assert rebuilt.status == 409 and error_code(rebuilt) == "module_version_reused"
    assert serves(node, "down") == "down 0.2.0"
    # The identical bundle again is a retried deploy, not a conflict.
    deploy_ok(node, versioned(publisher, "down", "0.2.0"))
    bad = deploy_q(node, versioned(publisher, "down", "0.1.0"), {"allow_downgrade": "yes"})
    assert bad.status == 400 and error_code(bad) == "bad_request"
    deploy_ok(node, versioned(publisher, "down", "0.1.0"), allow_downgrade="true")
    assert serves(node, "down") == "down 0.1.0"
    deploy_ok(node, versioned(publisher, "down", "0.1.0", build="b"), allow_downgrade="true")
    assert serves(node, "down") == "down 0.1.0 b"
    r = row(node, "down")
    assert r is not None and r["active_version"] == "0.1.0" and r["activation"] == "deploy"
    assert [(h["version"], h["active"]) for h in r["history"]] == [
        ("0.1.0", True),
        ("0.1.0", False),
        ("0.2.0", False),
    ]
    assert call(node.api, "GET", "/healthz").status == 200


def test_history_is_bounded(node: NodeProcess, publisher: Publisher) -> None:
    for minor in range(1, 6):
        deploy_ok(node, versioned(publisher, "bounded", f"1.{minor}.0"))
    r = row(node, "bounded")
    assert r is not None
    assert [h["version"] for h in r["history"]] == ["1.5.0", "1.4.0", "1.3.0"]
    # Dropped from the replicated document itself, not only from the listing.
    scan = call(
        node.api,
        "GET",
        f"/v1/admin/docs/{MODULES_DOC}/scan",
        token=node.token,
        query={"prefix": "bounded/v/"},
    ).json()
    assert len(scan["items"]) == 3
    gone = rollback(node, "bounded", {"version": "1.1.0"})
    assert gone.status == 404 and error_code(gone) == "unknown_version"
    assert "1.5.0, 1.4.0, 1.3.0" in gone.json()["error"]["message"]
    # The bound is by deploy order: a version rolled back to goes first all the same.
    assert rollback(node, "bounded", {"version": "1.3.0"}).status == 200
    deploy_ok(node, versioned(publisher, "bounded", "1.6.0"))
    r = row(node, "bounded")
    assert r is not None
    assert [h["version"] for h in r["history"]] == ["1.6.0", "1.5.0", "1.4.0"]


def test_rollback_errors_name_what_is_wrong(node: NodeProcess, publisher: Publisher) -> None:
    unknown = rollback(node, "no-such-module", {})
    assert unknown.status == 404 and error_code(unknown) == "unknown_module"
    deploy_ok(node, versioned(publisher, "lonely", "1.0.0"))
    alone = rollback(node, "lonely", {})
    assert alone.status == 409 and error_code(alone) == "nothing_to_roll_back"
    deploy_ok(node, versioned(publisher, "lonely", "1.1.0"))
    same = rollback(node, "lonely", {"version": "1.1.0"})
    assert same.status == 409 and error_code(same) == "nothing_to_roll_back"
    assert "already the active version" in same.json()["error"]["message"]
    for body in ({"version": 3}, {"version": ""}, {"versoin": "1.0.0"}, [], b"not json"):
        bad = call(
            node.api,
            "POST",
            "/v1/admin/modules/lonely/rollback",
            json.dumps(body).encode() if not isinstance(body, bytes) else body,
            token=node.token,
            validate=False,  # some of these bodies break the request schema on purpose
        )
        assert bad.status == 400 and error_code(bad) in ("bad_request", "invalid_json"), body
    back = rollback(node, "lonely", {"version": None})
    assert back.status == 200 and back.json()["version"] == "1.0.0"
    # Rolling back again goes further back only if something was deployed before.
    again = rollback(node, "lonely", {})
    assert again.status == 409 and error_code(again) == "nothing_to_roll_back"
    assert serves(node, "lonely") == "lonely 1.0.0"


def test_rollback_with_and_without_version_on_two_nodes(
    tmp_path: Path, publisher: Publisher
) -> None:
    a = start_node(node_dir(tmp_path / "a", publisher), "--no-mdns")
    b: NodeProcess | None = None
    try:
        b = start_node(
            node_dir(tmp_path / "b", publisher), "--no-mdns", "--peer", f"127.0.0.1:{a.sync_port}"
        )
        for version in ("0.1.0", "0.2.0", "0.3.0"):
            deploy_ok(a, versioned(publisher, "app", version))
        eventually(lambda: serves(b, "app") == "app 0.3.0", what="0.3.0 on b")  # type: ignore[arg-type]
        back = rollback(b, "app", {})
        assert back.status == 200 and back.json()["version"] == "0.2.0"
        for n in (a, b):
            eventually(lambda n=n: serves(n, "app") == "app 0.2.0", what=f"0.2.0 on {n.api}")
        r = row(a, "app")
        assert r is not None and r["activation"] == "rollback" and r["activated_by"] == b.node_id
        assert [h["version"] for h in r["history"] if h["active"]] == ["0.2.0"]
        named = rollback(a, "app", {"version": "0.1.0"})
        assert named.status == 200 and named.json()["version"] == "0.1.0"
        for n in (a, b):
            eventually(lambda n=n: serves(n, "app") == "app 0.1.0", what=f"0.1.0 on {n.api}")
        # Forward again by rolling "back" to the newest kept version.
        assert rollback(b, "app", {"version": "0.3.0"}).status == 200
        for n in (a, b):
            eventually(lambda n=n: serves(n, "app") == "app 0.3.0", what=f"0.3.0 on {n.api}")
    finally:
        if b is not None:
            b.stop()
        a.stop()


def test_a_partition_converges_to_the_later_activation(
    tmp_path: Path, publisher: Publisher
) -> None:
    a = start_node(node_dir(tmp_path / "a", publisher), "--no-mdns")
    b_data = node_dir(tmp_path / "b", publisher)
    b: NodeProcess | None = None
    try:
        b = start_node(b_data, "--no-mdns", "--peer", f"127.0.0.1:{a.sync_port}")
        for name in ("m1", "m2"):
            for version in ("0.1.0", "0.2.0"):
                deploy_ok(a, versioned(publisher, name, version))
        eventually(
            lambda: serves(b, "m1") == "m1 0.2.0" and serves(b, "m2") == "m2 0.2.0",  # type: ignore[arg-type]
            what="both modules on b",
        )
        b.stop()
        b = start_node(b_data, "--no-mdns")  # no peer: partitioned from a
        b_partitioned = b.node_id  # a dev node's id is new at every start
        # m1: a deploys, then b rolls back. m2: b rolls back, then a deploys.
        deploy_ok(a, versioned(publisher, "m1", "0.3.0"))
        assert rollback(b, "m1", {}).json()["version"] == "0.1.0"
        assert rollback(b, "m2", {}).json()["version"] == "0.1.0"
        deploy_ok(a, versioned(publisher, "m2", "0.3.0"))
        assert (serves(a, "m1"), serves(b, "m1")) == ("m1 0.3.0", "m1 0.1.0")
        assert (serves(a, "m2"), serves(b, "m2")) == ("m2 0.3.0", "m2 0.1.0")
        b.stop()
        b = start_node(b_data, "--no-mdns", "--peer", f"127.0.0.1:{a.sync_port}")
        for n in (a, b):
            eventually(
                lambda n=n: serves(n, "m1") == "m1 0.1.0" and serves(n, "m2") == "m2 0.3.0",
                what=f"the later activation of each module on {n.api}",
            )
        for n in (a, b):
            m1, m2 = row(n, "m1"), row(n, "m2")
            assert m1 is not None and m2 is not None
            assert (m1["active_version"], m1["activation"]) == ("0.1.0", "rollback")
            assert m1["activated_by"] == b_partitioned
            assert (m2["active_version"], m2["activation"]) == ("0.3.0", "deploy")
            assert m2["activated_by"] == a.node_id
            # Nothing deployed on either side of the partition was lost.
            assert {h["version"] for h in m1["history"]} == {"0.1.0", "0.2.0", "0.3.0"}
    finally:
        if b is not None:
            b.stop()
        a.stop()


def test_no_rollback_to_a_publisher_the_policy_no_longer_trusts(
    tmp_path: Path, publisher: Publisher
) -> None:
    data = node_dir(tmp_path / "n", publisher)
    n = start_node(data, "--no-mdns")
    try:
        deploy_ok(n, versioned(publisher, "revoked", "0.1.0"))
        deploy_ok(n, versioned(publisher, "revoked", "0.2.0"))
        other = make_publisher(tmp_path / "other", name="other")
        shutil.copy(other.policy_path, data / "trust-policy.json")
        reload = call(n.api, "POST", "/v1/admin/trust-policy/reload", token=n.token)
        assert reload.status == 200 and reload.json()["unloaded"] == ["revoked"]
        refused = rollback(n, "revoked", {"version": "0.1.0"})
        assert refused.status == 403 and error_code(refused) == "untrusted_publisher"
        r = row(n, "revoked")
        assert r is not None and r["active_version"] == "0.2.0" and r["activation"] == "deploy"
        assert serves(n, "revoked") == "HTTP 404"
        assert call(n.api, "GET", "/readyz").status == 200
    finally:
        n.stop()


def test_a_rollback_reaches_every_worker(tmp_path: Path, publisher: Publisher) -> None:
    n = start_node(node_dir(tmp_path / "w", publisher), "--no-mdns", "--workers", "2")
    try:
        deploy_ok(n, versioned(publisher, "wk", "0.1.0"))
        deploy_ok(n, versioned(publisher, "wk", "0.2.0"))
        before = every_worker(n.api, "/v1/invoke/wk")
        assert set(before.values()) == {(200, b"wk 0.2.0")}
        assert n.client.rollback("wk")["version"] == "0.1.0"
        after = every_worker(n.api, "/v1/invoke/wk")
        assert set(after.values()) == {(200, b"wk 0.1.0")}
    finally:
        n.stop()


def test_modules_from_before_history_still_load(tmp_path: Path, publisher: Publisher) -> None:
    data = node_dir(tmp_path / "old", publisher)
    n = start_node(data, "--no-mdns")
    old = versioned(publisher, "legacy", "0.1.0")
    deploy_ok(n, old)
    assert n.stop() == 0
    # Rewrite the record in the form nodes wrote before version history: the
    # bundle alone under the module's name.
    with Store.open(data / "store") as store:
        keys = [k for k, _ in store.scan(MODULES_DOC, "legacy/", None, 100).items]
        store.batch(
            [Delete(MODULES_DOC, k) for k in keys]
            + [Set(MODULES_DOC, "legacy", encode_bundle(old.wasm, old.manifest, old.signature))]
        )
    n = start_node(data, "--no-mdns")
    try:
        assert serves(n, "legacy") == "legacy 0.1.0"
        r = row(n, "legacy")
        assert r is not None and r["activation"] == "legacy" and len(r["history"]) == 1
        down = deploy(n, versioned(publisher, "legacy", "0.0.9"))
        assert down.status == 409 and error_code(down) == "module_downgrade"
        deploy_ok(n, versioned(publisher, "legacy", "0.2.0"))
        # The deploy moved the record into the history layout.
        moved = call(n.api, "GET", f"/v1/admin/docs/{MODULES_DOC}/keys/legacy", token=n.token)
        assert moved.status == 404
        assert rollback(n, "legacy", {}).json()["version"] == "0.1.0"
        assert serves(n, "legacy") == "legacy 0.1.0"
        r = row(n, "legacy")
        assert r is not None and [h["version"] for h in r["history"]] == ["0.2.0", "0.1.0"]
    finally:
        n.stop()
