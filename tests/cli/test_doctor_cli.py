"""``edgestate doctor`` where there is no node to ask, with bad arguments, and its rules.

The rules (``edgestate.node.findings``, ``cluster_findings``) are checked on facts
shaped like a node's diagnostics reply, at and around each threshold: they are a pure function of
those facts, so no node is needed to put a certificate two days from expiry or a
disk at 5 % free in front of them.
"""

from __future__ import annotations

import json
import socket
import time
from typing import Any

import pytest
from click.testing import CliRunner

from edgestate.cli.main import cli
from edgestate.node.cluster_findings import findings_of
from edgestate.node.findings import CERT_WARN_S, DAY_S, overall
from tests.schemas import validate


def free_port() -> int:
    """A 127.0.0.1 port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_an_unreachable_node_is_a_finding_with_its_fix_not_a_traceback() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    r = CliRunner().invoke(cli, ["doctor", "--node", url, "--token", "t"])
    assert r.exit_code == 1, r.output
    assert r.stdout.startswith(f"edgestate doctor: {url}"), r.stdout
    assert "PROBLEM" in r.stdout and "check that the node is running" in r.stdout, r.stdout
    assert isinstance(r.exception, SystemExit) and "Traceback" not in r.output

    r = CliRunner().invoke(cli, ["doctor", "--node", url, "--json"])
    assert r.exit_code == 1, r.output
    report = json.loads(r.stdout)
    validate("cli/doctor.schema.json", report)
    assert report["diagnostics"] is None and report["status"] == "problem"
    assert report["findings"][0]["check"] == "node"
    assert "unreachable" in report["findings"][0]["what"]


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("not-a-url", "is not an http(s) URL"),
        ("ftp://127.0.0.1:7474", "is not an http(s) URL"),
        ("http://[::1", "is not a URL"),
        ("http://127.0.0.1:99999", "is not a URL"),
    ],
)
def test_a_bad_node_url_is_refused_before_anything_is_dialed(url: str, says: str) -> None:
    r = CliRunner().invoke(cli, ["doctor", "--node", url])
    assert r.exit_code == 2, r.output
    assert "--node" in r.stderr and says in r.stderr, r.stderr
    assert "Traceback" not in r.output


def test_bad_arguments_are_usage_errors() -> None:
    r = CliRunner().invoke(cli, ["doctor", "--bogus"])
    assert r.exit_code == 2 and "No such option" in r.stderr, r.output
    r = CliRunner().invoke(cli, ["doctor", "extra"])
    assert r.exit_code == 2 and "unexpected extra argument" in r.stderr, r.output
    r = CliRunner().invoke(cli, ["doctor", "--token", "a", "--token-file", "/nonexistent"])
    assert r.exit_code == 2 and "not both" in r.stderr, r.output


# --- the rules -------------------------------------------------------------------------


def facts(**over: Any) -> dict[str, Any]:
    """A healthy node's diagnostics facts (TLS on, one peer in step), with overrides."""
    now = time.time()
    base: dict[str, Any] = {
        "checked_at": now,
        "node": {
            "version": "0",
            "node_id": "a" * 64,
            "cluster_id": "c" * 64,
            "replica": 1,
            "insecure": False,
        },
        "tls": {
            "enabled": True,
            "cert": "/x/node.pem",
            "cert_not_after": now + 365 * DAY_S,
            "ca_not_after": now + 3650 * DAY_S,
            "error": None,
        },
        "trust": {
            "path": "/x/trust-policy.json",
            "exists": True,
            "publishers": ["acme"],
            "file_error": None,
            "matches_file": True,
            "refused_modules": [],
        },
        "storage": {
            "data_dir": "/x",
            "disk_total_bytes": 100 << 30,
            "disk_free_bytes": 50 << 30,
            "map_size": 64 << 30,
            "map_used_bytes": 1 << 20,
        },
        "peers": [
            {
                "node_id": "b" * 64,
                "address": "127.0.0.1:7475",
                "source": "static",
                "state": "connected",
                "connected": True,
                "seen_ago_s": 0.0,
                "last_sync": now,
                "failures": 0,
                "last_error": None,
                "cert_not_after": now + 365 * DAY_S,
                "vectors_fresh": True,
                "documents_not_compared": 0,
            }
        ],
        "replicas": {"differences": [], "more": 0},
        "gc": {"me": 1, "members": [1, 2], "forgotten": [], "round_s": 5.0, "holders": []},
    }
    for path, value in over.items():
        section, _, key = path.partition("__")
        if key:
            base[section][key] = value
        else:
            base[section] = value
    return base


def severities(found: list[dict[str, str]], check: str) -> list[str]:
    return [f["severity"] for f in found if f["check"] == check]


def test_a_healthy_node_is_all_ok() -> None:
    found = findings_of(facts())
    assert overall(found) == "ok", found
    assert {f["check"] for f in found} == {"tls", "trust", "disk", "map", "peers", "replicas", "gc"}


def test_certificate_expiry_thresholds() -> None:
    now = time.time()
    soon = findings_of(facts(tls__cert_not_after=now + CERT_WARN_S - DAY_S))
    assert severities(soon, "tls") == ["warn"]
    assert "expires in 13" in soon[0]["what"] and "cluster issue" in soon[0]["fix"]
    expired = findings_of(facts(tls__cert_not_after=now - 1))
    assert severities(expired, "tls") == ["problem"] and overall(expired) == "problem"
    peer = facts()
    peer["peers"][0]["cert_not_after"] = now - 1
    found = findings_of(peer)
    assert [f["subject"] for f in found if f["check"] == "tls" and f["severity"] == "problem"] == [
        f"peer {'b' * 16} (127.0.0.1:7475)"
    ]


def test_disk_and_map_headroom_below_ten_percent_is_a_problem() -> None:
    disk = findings_of(facts(storage__disk_free_bytes=5 << 30))
    assert severities(disk, "disk") == ["problem"], disk
    assert severities(findings_of(facts(storage__disk_free_bytes=11 << 30)), "disk") == ["ok"]
    full = findings_of(facts(storage__map_used_bytes=60 << 30))
    assert severities(full, "map") == ["problem"]
    assert "map_size" in next(f["fix"] for f in full if f["check"] == "map")


def test_a_changed_or_broken_trust_policy_and_refused_modules() -> None:
    assert severities(findings_of(facts(trust__matches_file=False)), "trust") == ["warn"]
    broken = findings_of(facts(trust__file_error="config_error: bad", trust__matches_file=None))
    assert severities(broken, "trust") == ["problem"]
    refused = findings_of(facts(trust__refused_modules=[{"name": "cart", "error": "untrusted"}]))
    assert [f["subject"] for f in refused if f["severity"] == "problem"] == ["module cart"]
    nobody = findings_of(facts(trust__publishers=[], trust__exists=False))
    assert severities(nobody, "trust") == ["warn"]


def test_a_down_peer_and_what_it_lacks_are_problems() -> None:
    now = time.time()
    f = facts()
    f["peers"][0].update(
        connected=False,
        state="backoff",
        failures=3,
        last_error="ClientConnectorError: Cannot connect to host 127.0.0.1:7475",
    )
    f["replicas"]["differences"] = [
        {
            "doc": "orders",
            "node_id": "b" * 64,
            "lacking": "peer",
            "client": 1,
            "updates": 4,
            "whole_document": False,
            "as_of": now - 60,
            "fresh": False,
        }
    ]
    found = findings_of(f)
    down = [x for x in found if x["severity"] == "problem"]
    assert [x["check"] for x in down] == ["peers", "replicas"], found
    assert "start the node at 127.0.0.1:7475" in down[0]["fix"]
    assert "lacks 4 updates of client 1 in orders" in down[1]["what"]
    # Refused in the TLS handshake: the fix is about certificates, not starting it.
    f["peers"][0]["last_error"] = "refused: certificate verify failed"
    refused = [x for x in findings_of(f) if x["check"] == "peers"]
    assert "same cluster CA" in refused[0]["fix"], refused
    # Connected and still differing (in flight while checking): a warning.
    f["peers"][0].update(connected=True, state="connected")
    assert severities(findings_of(f), "replicas") == ["warn"]


def test_a_member_holding_gc_back_is_a_warning_naming_the_forget() -> None:
    holders = [{"doc": "orders", "replica": 2, "behind": None, "reported": False}]
    found = findings_of(facts(gc__holders=holders))
    gc = [x for x in found if x["check"] == "gc"]
    assert [x["severity"] for x in gc] == ["warn"]
    assert "edgestate forget 2 --yes" in gc[0]["fix"]
