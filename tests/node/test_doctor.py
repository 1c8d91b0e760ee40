"""``edgestate doctor`` on a real three-node cluster: all ok, then one node stopped.

Every diagnostics reply is checked against schemas/openapi.yaml, ``doctor --json``
against schemas/cli/doctor.schema.json. Waits are on conditions, with a bound.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import tomli_w
from click.testing import CliRunner, Result

from edgestate.cli.main import cli
from tests.node.api_check import call
from tests.node.conftest import NodeProcess, eventually, start_node
from tests.schemas import validate


def diagnostics(node: NodeProcess) -> dict[str, Any]:
    """``GET /v1/admin/diagnostics``, checked against the OpenAPI description."""
    reply = call(node.api, "GET", "/v1/admin/diagnostics", token=node.token)
    assert reply.status == 200, reply.body
    body: dict[str, Any] = reply.json()
    return body


def doctor(node: NodeProcess, *args: str) -> Result:
    return CliRunner().invoke(cli, ["doctor", "--node", node.api, "--token", node.token, *args])


def problems(body: dict[str, Any]) -> list[dict[str, str]]:
    return [f for f in body["findings"] if f["severity"] == "problem"]


def test_doctor_on_a_cluster_all_ok_then_with_one_node_stopped(
    tmp_path: Path, node_factory: list[NodeProcess]
) -> None:
    # Fast report rounds: members' reports (the GC check) converge within the test.
    config = tmp_path / "fast.toml"
    config.write_text(tomli_w.dumps({"sync": {"gc_round_s": 0.2, "anti_entropy_s": 1.0}}))
    a = start_node(tmp_path / "a", "--no-mdns", config=config)
    node_factory.append(a)
    peer = ("--no-mdns", "--peer", f"127.0.0.1:{a.sync_port}")
    b = start_node(tmp_path / "b", *peer, config=config)
    node_factory.append(b)
    c = start_node(tmp_path / "c", *peer, config=config)
    node_factory.append(c)
    a.client.put("orders", "o-1", b"pending", create=True)
    eventually(
        lambda: (
            "orders" in {d["name"] for d in c.client.documents()}
            and c.client.get("orders", "o-1")["found"]
        ),
        what="o-1 reaching c",
    )

    def healthy() -> dict[str, Any] | None:
        body = diagnostics(a)
        # Insecure mode and no trust policy are this test's setup (warnings); the rest
        # is ok once every member's reports have arrived.
        rest = [f for f in body["findings"] if f["check"] not in ("tls", "trust")]
        ok = all(f["severity"] == "ok" for f in rest) and len(body["peers"]) == 2
        return body if ok else None

    body = eventually(healthy, what="a healthy cluster as seen from a")
    by_check = {f["check"]: f for f in body["findings"] if f["severity"] == "ok"}
    # Every check ran and the replicas and GC checks passed, not only "no problem".
    assert {"disk", "map", "peers", "replicas", "gc"} <= set(by_check), body["findings"]
    assert {p["node_id"] for p in body["peers"]} == {b.node_id, c.node_id}
    assert all(p["connected"] and p["vectors_fresh"] for p in body["peers"]), body["peers"]
    assert body["replicas"]["differences"] == []
    assert sorted(body["gc"]["members"]) == sorted(n.client.members()["me"] for n in (a, b, c))
    # Insecure dev mode is a warning, never a problem: exit 0.
    r = doctor(a, "--json")
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    validate("cli/doctor.schema.json", report)
    assert report["status"] == "warn"
    assert any(f["check"] == "tls" and f["severity"] == "warn" for f in report["findings"])

    # c stops; a takes a write c has not got.
    assert c.stop() == 0, c.log()
    a.client.put("orders", "o-2", b"shipped")
    me_a = a.client.members()["me"]

    def c_down() -> dict[str, Any] | None:
        body = diagnostics(a)
        return body if any(c.node_id[:16] in f["subject"] for f in problems(body)) else None

    body = eventually(c_down, what="a finding c down")
    gaps = [d for d in body["replicas"]["differences"] if d["node_id"] == c.node_id]
    assert {(d["doc"], d["lacking"], d["client"]) for d in gaps} >= {("orders", "peer", me_a)}
    assert all(not d["fresh"] for d in gaps)
    # b is still there and agrees with a: nothing about it is a problem.
    assert not [f for f in problems(body) if b.node_id[:16] in f["subject"]]

    r = doctor(a)
    assert r.exit_code == 1, r.output
    lines = r.stdout.splitlines()
    down = [line for line in lines if line.startswith("PROBLEM") and c.node_id[:16] in line]
    assert any("peers" in line for line in down), r.stdout
    assert any("lacks" in line and f"client {me_a} in orders" in line for line in down), r.stdout
    # Each problem says what to do on the next line.
    for i, line in enumerate(lines):
        if line.startswith("PROBLEM"):
            assert lines[i + 1].strip().startswith("->"), r.stdout
    assert lines[-1].startswith(f"{len(problems(body))} problems"), r.stdout

    r = doctor(a, "--json")
    assert r.exit_code == 1, r.output
    report = json.loads(r.stdout)
    validate("cli/doctor.schema.json", report)
    assert report["status"] == "problem"

    # The doctor on b finds c too (b learned of it as a member), and says a is fine.
    r = doctor(b, "--json")
    report = json.loads(r.stdout)
    validate("cli/doctor.schema.json", report)
    peers_b = {p["node_id"]: p for p in report["diagnostics"]["peers"]}
    assert peers_b[a.node_id]["connected"], peers_b


def test_diagnostics_need_the_admin_token(tmp_path: Path, node_factory: list[NodeProcess]) -> None:
    a = start_node(tmp_path / "a", "--no-mdns")
    node_factory.append(a)
    assert call(a.api, "GET", "/v1/admin/diagnostics").status == 401
    assert call(a.api, "GET", "/v1/admin/diagnostics", token="nope").status == 403
    # A lone node: no peers is a warning (nothing replicates it), not a problem.
    body = diagnostics(a)
    assert body["peers"] == [] and not problems(body), body["findings"]
    assert any(f["check"] == "peers" and f["severity"] == "warn" for f in body["findings"])
    r = CliRunner().invoke(cli, ["doctor", "--node", a.api, "--token", "nope"])
    assert r.exit_code == 1, r.output
    assert "PROBLEM" in r.stdout and "--token-file" in r.stdout, r.stdout
    assert "Traceback" not in r.output


def test_a_peer_this_node_dials_is_unreachable_and_lacks_what_was_written_meanwhile(
    tmp_path: Path, node_factory: list[NodeProcess]
) -> None:
    a = start_node(tmp_path / "a", "--no-mdns")
    node_factory.append(a)
    address = f"127.0.0.1:{a.sync_port}"
    b = start_node(tmp_path / "b", "--no-mdns", "--peer", address)
    node_factory.append(b)
    b.client.put("carts", "c-1", b"1", create=True)
    eventually(lambda: "carts" in {d["name"] for d in a.client.documents()}, what="carts on a")
    # One exchange after carts reached a, so b's record of a holds it.
    eventually(lambda: not diagnostics(b)["replicas"]["differences"], what="b and a agreeing")
    assert a.stop() == 0, a.log()
    b.client.put("carts", "c-2", b"2")
    me_b = b.client.members()["me"]

    def a_unreachable() -> dict[str, Any] | None:
        body = diagnostics(b)
        peer = next((p for p in body["peers"] if p["address"] == address), None)
        return body if peer is not None and not peer["connected"] and peer["failures"] else None

    body = eventually(a_unreachable, what="b failing to dial a")
    down = [f for f in problems(body) if f["check"] == "peers"]
    assert len(down) == 1 and address in down[0]["subject"], body["findings"]
    assert "unreachable" in down[0]["what"] and f"start the node at {address}" in down[0]["fix"]
    lacking = [f for f in problems(body) if f["check"] == "replicas"]
    assert len(lacking) == 1, body["findings"]
    assert f"lacks 1 update of client {me_b} in carts" in lacking[0]["what"], lacking
    r = doctor(b)
    assert r.exit_code == 1 and address in r.stdout, r.output
