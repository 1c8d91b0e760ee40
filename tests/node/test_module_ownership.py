"""On real nodes: a publisher cannot take over another's module, at deploy or by
replication, and a restart does not forget who holds a name."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edgestate.devkit import Bundle, Publisher, example_bundle, make_publisher
from edgestate.node import history as H
from edgestate.node.config import store_dir_of
from edgestate.store import Set, Store, WriteOp
from tests.node.api_check import call
from tests.node.conftest import NodeProcess, eventually, start_node
from tests.node.test_modules_e2e import BUILD, deploy, invoke, wat_bundle


def _policy(tmp_path: Path, *publishers: Publisher) -> Path:
    entries = [json.loads(p.policy_path.read_text())["publishers"][0] for p in publishers]
    path = tmp_path / "trust-policy.json"
    path.write_text(json.dumps({"version": 1, "publishers": entries}))
    return path


def _row(node: NodeProcess, name: str) -> dict[str, Any] | None:
    rows = call(node.api, "GET", "/v1/admin/modules", token=node.token).json()["modules"]
    return next((r for r in rows if r["name"] == name), None)


def _stored(node: NodeProcess, key: str) -> bool:
    reply = call(node.api, "GET", f"/v1/admin/docs/kv/keys/{key}", token=node.token)
    return reply.status == 200 and reply.json()["found"]


def _activating(store: Store, bundle: Bundle) -> list[WriteOp]:
    """The writes a node with a laxer policy makes to deploy ``bundle`` (history.py)."""
    history = H.read_history(store, "_modules", bundle.name)
    key, stamp = H.entry_key(bundle.name, bundle.wasm, bundle.manifest), H.next_stamp(history)
    version = json.loads(bundle.manifest)["version"]
    entry = H.pack_entry(
        bundle.wasm,
        bundle.manifest,
        bundle.signature,
        version=version,
        publisher="acme",
        node="laxer",
        stamp=stamp,
    )
    return [
        Set("_modules", key, entry),
        *H.activation_ops(
            history,
            "_modules",
            entry=key,
            version=version,
            op="deploy",
            replica=store.replica_id,
            node="laxer",
            stamp=stamp,
        ),
    ]


def test_a_publisher_cannot_take_over_another_publishers_module(tmp_path: Path) -> None:
    demo = make_publisher(tmp_path / "demo", name="demo")
    acme = make_publisher(tmp_path / "acme", name="acme")
    policy = _policy(tmp_path, demo, acme)
    real = example_bundle("kv_echo", demo, BUILD)
    noop = wat_bundle(acme, "kv-echo", "noop")
    nodes: list[NodeProcess] = []
    try:
        a = start_node(tmp_path / "a", "--no-mdns", "--trust-policy", str(policy))
        nodes.append(a)
        b_data = tmp_path / "b"
        b_args = ("--no-mdns", "--trust-policy", str(policy), "--peer", f"127.0.0.1:{a.sync_port}")
        b = start_node(b_data, *b_args)
        nodes.append(b)
        assert deploy(a, real).status == 201
        eventually(lambda: (_row(b, "kv-echo") or {}).get("state") == "active", what="on b")

        # At deploy: refused on the receiving node, naming the owner; nothing changes.
        reply = deploy(a, noop)
        assert reply.status == 409, reply.body
        error = reply.json()["error"]
        assert error["code"] == "module_owned" and "publisher 'demo'" in error["message"]
        assert invoke(a, "kv-echo", b"k1=v1").status == 200
        assert _stored(a, "k1")

        # By replication: the takeover written straight into _modules, as a node
        # with a laxer policy would write it, is refused by every node, which keeps
        # the owner's version running. The API refuses writes to system documents,
        # so it goes into a's store while a is stopped; a then dials b with it.
        assert a.stop() == 0, a.log()
        with Store.open(store_dir_of(tmp_path / "a")) as store:
            store.batch(_activating(store, noop))
        a_args = ("--no-mdns", "--trust-policy", str(policy), "--peer", f"127.0.0.1:{b.sync_port}")
        a = start_node(tmp_path / "a", *a_args)
        nodes.append(a)

        def refused(n: NodeProcess) -> dict[str, Any] | None:
            row = _row(n, "kv-echo")
            return row if row and row["error_code"] == "module_owned" else None

        # a restarted with only the takeover stored: it refuses it by the owner it
        # remembers (and runs nothing under the name until the owner redeploys).
        row = eventually(lambda: refused(a), what="takeover refused on a")
        assert row["state"] == "refused" and "'demo'" in row["error"]
        # b, live throughout, refuses it as it replicates in and keeps the owner's.
        row = eventually(lambda: refused(b), what="takeover refused on b")
        assert row["state"] == "refused" and row["publisher"] == "demo"
        assert invoke(b, "kv-echo", b"k2=v2").status == 200
        eventually(lambda: _stored(b, "k2"), what="k2 written on b")

        # A restart does not forget the owner: the stored takeover is still refused.
        assert b.stop() == 0, b.log()
        b_args = (*b_args[:-1], f"127.0.0.1:{a.sync_port}")  # a restarted on a new port
        b = start_node(b_data, *b_args)
        nodes.append(b)
        row = _row(b, "kv-echo")
        assert row is not None and row["state"] == "refused", row
        assert row["error_code"] == "module_owned" and "'demo'" in row["error"]
        assert invoke(b, "kv-echo", b"k3=v3").json()["error"]["code"] == "unknown_module"

        # The owner's redeploy heals the cluster, and removal frees the name.
        assert deploy(a, Bundle(real.name, real.wasm, real.manifest, real.signature)).status == 201
        eventually(lambda: (_row(b, "kv-echo") or {}).get("state") == "active", what="healed")
        assert call(a.api, "DELETE", "/v1/admin/modules/kv-echo", token=a.token).status == 200
        eventually(lambda: (_row(b, "kv-echo") or {}).get("state") == "removed", what="removed")
        assert deploy(a, noop).status == 201
    finally:
        for n in nodes:
            n.stop()
