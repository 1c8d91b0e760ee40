"""Cluster members over the API, the CLI and /metrics, on real node subprocesses.

Every API reply is checked against schemas/openapi.yaml, ``members --json``
against schemas/cli/members.schema.json. Waits are on conditions, with a bound.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from click.testing import CliRunner, Result
from prometheus_client.parser import text_string_to_metric_families

from edgestate.cli.main import cli
from tests.node.api_check import call
from tests.node.conftest import NodeProcess, eventually, start_node
from tests.schemas import validate

# Not a replica id of any node here: those are random 52-bit odd numbers.
UNKNOWN_REPLICA = 4242


def members(node: NodeProcess) -> dict[str, Any]:
    """``GET /v1/admin/members``, checked against the OpenAPI description."""
    reply = call(node.api, "GET", "/v1/admin/members", token=node.token)
    assert reply.status == 200, reply.body
    body: dict[str, Any] = reply.json()
    return body


def samples(node: NodeProcess, family: str) -> dict[tuple[tuple[str, str], ...], float]:
    """The samples of one metric family on ``/metrics``, by sorted label pairs."""
    text = call(node.api, "GET", "/metrics").body.decode()
    return {
        tuple(sorted(s.labels.items())): s.value
        for f in text_string_to_metric_families(text)
        if f.name == family
        for s in f.samples
    }


def cli_run(node: NodeProcess, *args: str) -> Result:
    """``edgestate ARGS --node <node> --token <token>`` in-process."""
    return CliRunner().invoke(cli, [*args, "--node", node.api, "--token", node.token])


def write_config(path: Path, settings: dict[str, Any]) -> Path:
    """A node config file holding ``settings``."""
    path.write_text(tomli_w.dumps(settings))
    return path


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    root = tmp_path_factory.mktemp("members")
    # SOLO collection with a tiny compaction threshold, so overwrites made over the
    # API are collected within a few writes (a lone node is its own cluster).
    config = write_config(
        root / "node.toml", {"store": {"gc": "solo", "compact_min_log_bytes": 1024}}
    )
    n = start_node(root / "data", "--no-mdns", config=config)
    yield n
    assert n.stop() == 0, n.log()


# --- API ---------------------------------------------------------------------------


def test_a_lone_node_is_its_only_member(node: NodeProcess) -> None:
    body = members(node)
    # The id the node answers with is its data directory's replica id.
    r = CliRunner().invoke(cli, ["inspect", "--data", str(node.data), "stats", "--json"])
    assert r.exit_code == 0, r.output
    assert body["me"] == json.loads(r.stdout)["replica_id"]
    # No peers (no mDNS either): the node itself is all it waits for.
    assert [(m["replica"], m["self"]) for m in body["members"]] == [(body["me"], True)]
    assert body["members"][0]["documents"] >= 0
    assert body["me"] not in body["forgotten"]


def test_forgetting_an_unknown_replica_is_a_404(node: NodeProcess) -> None:
    # (Refused since the hardening issue: a typo used to leave a permanent entry.)
    reply = call(node.api, "DELETE", f"/v1/admin/members/{UNKNOWN_REPLICA}", token=node.token)
    assert reply.status == 404, reply.body
    assert reply.json()["error"]["code"] == "unknown_member"
    after = members(node)
    assert UNKNOWN_REPLICA not in after["forgotten"]
    assert UNKNOWN_REPLICA not in {m["replica"] for m in after["members"]}


@pytest.mark.parametrize(
    ("replica", "says"),
    [
        ("SELF", "own id"),
        ("abc", "'abc'"),
        ("-1", "'-1'"),
        ("1.5", "'1.5'"),
        ("+5", "'+5'"),
        (str(2**53), "out of range"),
        ("9" * 40, "out of range"),
    ],
)
def test_forgetting_itself_or_a_non_id_is_a_400(node: NodeProcess, replica: str, says: str) -> None:
    me = members(node)["me"]
    target = str(me) if replica == "SELF" else replica
    reply = call(node.api, "DELETE", f"/v1/admin/members/{target}", token=node.token)
    assert reply.status == 400, reply.body
    error = reply.json()["error"]
    assert error["code"] == "bad_request"
    assert says in error["message"], error
    assert members(node)["me"] == me  # and nothing changed
    assert me not in members(node)["forgotten"]


def test_member_routes_need_the_token(node: NodeProcess) -> None:
    assert call(node.api, "GET", "/v1/admin/members").status == 401
    denied = call(node.api, "DELETE", f"/v1/admin/members/{UNKNOWN_REPLICA + 2}", token="nope")
    assert denied.status == 403
    assert UNKNOWN_REPLICA + 2 not in members(node)["forgotten"]


def test_docs_rows_and_metrics_carry_collected_items(node: NodeProcess) -> None:
    ops = [
        {"op": "set", "key": f"k{k}", "base64": base64.b64encode(b"x" * 32).decode()}
        for k in range(10)
    ]

    def collected() -> int:
        # Each batch overwrites every key: garbage for SOLO collection to take.
        wrote = call(
            node.api,
            "POST",
            "/v1/admin/docs/churn/batch",
            json.dumps({"ops": ops}).encode(),
            token=node.token,
            query={"create": "true"},
        )
        assert wrote.status == 200, wrote.body
        rows = call(node.api, "GET", "/v1/admin/docs", token=node.token).json()["documents"]
        return int({r["name"]: r for r in rows}["churn"]["collected_items"])

    items = eventually(collected, what="overwrites collected")
    rows = call(node.api, "GET", "/v1/admin/docs", token=node.token).json()["documents"]
    assert all(isinstance(r["collected_items"], int) and r["collected_items"] >= 0 for r in rows)
    gauge = samples(node, "edgestate_gc_collected_items")
    assert set(gauge) >= {(("doc", r["name"]),) for r in rows}
    # A collection the last batch started may still land in between: never fewer.
    assert gauge[(("doc", "churn"),)] >= items > 0


def test_metrics_count_the_members(node: NodeProcess) -> None:
    assert samples(node, "edgestate_cluster_members") == {(): len(members(node)["members"])}


# --- CLI ---------------------------------------------------------------------------


def test_members_command_json_and_table(node: NodeProcess) -> None:
    r = cli_run(node, "members", "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    validate("cli/members.schema.json", out)
    assert out == members(node)
    r = cli_run(node, "members")
    assert r.exit_code == 0, r.output
    header, _, *rows = r.stdout.splitlines()
    assert header.split() == ["REPLICA", "SELF", "DOCS", "REPORTED"]
    assert any(row.split()[:2] == [str(out["me"]), "yes"] for row in rows)
    if out["forgotten"]:
        assert f"forgotten: {', '.join(map(str, out['forgotten']))}" in r.stdout


def test_forget_command_refuses_without_yes(node: NodeProcess) -> None:
    replica = UNKNOWN_REPLICA + 4
    r = cli_run(node, "forget", str(replica))
    assert r.exit_code != 0
    message = " ".join(r.stderr.split())  # click may wrap it
    for says in ("--yes", "stop waiting", "stale replica", "data wiped"):
        assert says in message, message
    assert replica not in members(node)["forgotten"]  # the node was not even asked


def test_forget_command_with_yes(node: NodeProcess) -> None:
    # A lone node's only member is itself: an unknown id is refused, as a CLI error...
    replica = UNKNOWN_REPLICA + 6
    r = cli_run(node, "forget", str(replica), "--yes", "--json")
    # under --json the error is the JSON document on stdout (docs/cli.md)
    assert r.exit_code == 1 and r.stderr == "", r.output
    assert json.loads(r.stdout)["error"]["code"] == "unknown_member", r.output
    assert replica not in members(node)["forgotten"]
    # ...and so is the node's own id, by the node.
    r = cli_run(node, "forget", str(members(node)["me"]), "--yes")
    assert r.exit_code == 1 and "bad_request" in r.stderr and "own id" in r.stderr


# --- two nodes ---------------------------------------------------------------------


def test_a_peer_becomes_a_member_and_can_be_forgotten_once_gone(
    tmp_path: Path, node_factory: list[NodeProcess]
) -> None:
    # Fast report rounds, so the peer's document reports arrive within the test.
    config = write_config(tmp_path / "fast.toml", {"sync": {"gc_round_s": 0.1}})
    a = start_node(tmp_path / "a", "--no-mdns", config=config)
    node_factory.append(a)
    b = start_node(tmp_path / "b", "--no-mdns", "--peer", f"127.0.0.1:{a.sync_port}", config=config)
    node_factory.append(b)
    me_a, me_b = members(a)["me"], members(b)["me"]

    def b_reported_on_a() -> dict[str, Any] | None:
        rows = {m["replica"]: m for m in members(a)["members"]}
        row = rows.get(me_b)
        return row if row is not None and row["documents"] > 0 else None

    row = eventually(b_reported_on_a, what="b's reports reaching a")
    assert row["self"] is False
    assert sorted(m["replica"] for m in members(a)["members"]) == sorted([me_a, me_b])
    assert samples(a, "edgestate_cluster_members") == {(): 2.0}

    assert b.stop() == 0, b.log()
    r = cli_run(a, "forget", str(me_b), "--yes", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout) == {"forgotten": me_b, "was_member": True}
    after = members(a)
    assert [m["replica"] for m in after["members"]] == [me_a]
    assert after["forgotten"] == [me_b]
    assert samples(a, "edgestate_cluster_members") == {(): 1.0}
    # A second time it is no longer a member: nothing changes, and that is no error.
    again = call(a.api, "DELETE", f"/v1/admin/members/{me_b}", token=a.token)
    assert again.json() == {"forgotten": me_b, "was_member": False}
    r = cli_run(a, "forget", str(me_b), "--yes")
    assert r.exit_code == 0 and f"replica {me_b} was already forgotten" in r.stdout, r.output
    r = cli_run(a, "members")
    assert f"forgotten: {me_b}" in r.stdout, r.output
