"""The doctor's rules about peers: reachability, clocks, replicas, garbage collection.

See :mod:`edgestate.node.findings` for the finding shape and the node's own checks;
:func:`findings_of` is the entry point of both.
"""

from __future__ import annotations

from typing import Any

from edgestate.node.findings import Finding, expiry, finding, node_findings, plural

# Clock skew with a peer (sync version 5 ``about`` frames; the reading includes the
# one-way transit time, milliseconds on a LAN). Over a second, log lines of two
# nodes no longer line up and ``last_sync`` ages mislead; over five minutes a
# certificate issued on one node (backdated 5 minutes, sync/tls.py) is not yet
# valid on the other, whose TLS handshake then refuses it.
CLOCK_WARN_S = 1.0
CLOCK_PROBLEM_S = 300.0


def findings_of(facts: dict[str, Any]) -> list[Finding]:
    """Every finding of one node's diagnostics, node checks first, then each peer."""
    now = float(facts["checked_at"])
    peers = facts["peers"]
    return [
        *node_findings(facts),
        *_peers(peers, now),
        *_clocks(peers),
        *_replicas(facts["replicas"], {p["node_id"]: p for p in peers}),
        *_gc(facts["gc"], peers),
    ]


def _peer_name(peer: dict[str, Any]) -> str:
    node = (peer["node_id"] or "?")[:16]
    return f"peer {node} ({peer['address']})" if peer["address"] else f"peer {node}"


def _unreachable_fix(peer: dict[str, Any]) -> str:
    error = peer["last_error"] or ""
    if "not ours" in error:  # its hello named another cluster (sync/connection.py)
        return (
            f"the node at {peer['address']} belongs to another cluster: give it a "
            "certificate from this cluster's CA (`edgestate cluster issue`), or remove it "
            "from this node's peers"
        )
    if error.startswith("refused"):  # TLS verification, or its policy refused us
        return (
            f"the node at {peer['address']} and this one do not accept each other: check "
            "that both certificates come from the same cluster CA, are not expired or "
            "revoked, and that both clocks are right"
        )
    return (
        f"start the node at {peer['address']} (or check the network and its sync port); "
        "if it is gone for good, remove it from this node's peers"
    )


def _peers(peers: list[dict[str, Any]], now: float) -> list[Finding]:
    out: list[Finding] = []
    if not peers:
        out.append(
            finding(
                "warn",
                "peers",
                "this node",
                "no peers known: nothing replicates this node's documents",
                "list peers with --peer HOST:PORT (or sync.peers in the config), or turn on "
                "mDNS, unless this node is meant to run alone",
            )
        )
    for peer in peers:
        name = _peer_name(peer)
        if peer["connected"]:
            synced = (
                f"last state-vector exchange {now - peer['last_sync']:.1f} s ago"
                if peer["last_sync"]
                else "no state-vector exchange yet"
            )
            out.append(finding("ok", "peers", name, f"connected; {synced}"))
        elif peer["source"] == "inbound":
            out.append(
                finding(
                    "problem",
                    "peers",
                    name,
                    f"disconnected: it dialed this node and went away {peer['seen_ago_s']:.0f} s "
                    "ago",
                    "start that node again (it dials back itself: this node knows no address "
                    "for it); one that left for good is dropped from this list after "
                    "sync.forget_after_s",
                )
            )
        else:
            error = f": {peer['last_error']}" if peer["last_error"] else ""
            out.append(
                finding(
                    "problem",
                    "peers",
                    name,
                    f"unreachable ({peer['state']}, {peer['failures']} failed dials, last "
                    f"connected {peer['seen_ago_s']:.0f} s ago){error}",
                    _unreachable_fix(peer),
                )
            )
        if peer["cert_not_after"] is not None:
            cert = expiry(
                "tls",
                name,
                peer["cert_not_after"],
                now,
                "issue that node a new certificate with `edgestate cluster issue` and restart it",
            )
            if cert["severity"] != "ok":
                out.append(cert)
    return out


def _clocks(peers: list[dict[str, Any]]) -> list[Finding]:
    out: list[Finding] = []
    measured = [p for p in peers if p.get("clock_offset_s") is not None]
    for peer in measured:
        offset = float(peer["clock_offset_s"])
        ahead = f"{abs(offset):.1f} s {'ahead of' if offset > 0 else 'behind'} this node's"
        if abs(offset) > CLOCK_WARN_S:
            severe = abs(offset) > CLOCK_PROBLEM_S
            out.append(
                finding(
                    "problem" if severe else "warn",
                    "clock",
                    _peer_name(peer),
                    f"its clock is {ahead}"
                    + (
                        ": certificates issued on one look not yet valid on the other"
                        if severe
                        else ""
                    ),
                    "run NTP (chrony or systemd-timesyncd) on both nodes",
                )
            )
    if measured and not out:
        worst = max(abs(float(p["clock_offset_s"])) for p in measured)
        out.append(
            finding(
                "ok",
                "clock",
                "peers",
                f"clocks agree within {worst:.3f} s ({len(measured)} peers measured)",
            )
        )
    return out


def _replicas(replicas: dict[str, Any], peers: dict[str | None, dict[str, Any]]) -> list[Finding]:
    out: list[Finding] = []
    by_peer: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in replicas["differences"]:
        by_peer.setdefault((row["node_id"], row["lacking"]), []).append(row)
    for (node_id, lacking), rows in sorted(by_peer.items()):
        peer = peers.get(node_id, {"node_id": node_id, "address": None, "connected": False})
        name = _peer_name(peer)
        parts = [
            f"{plural(r['updates'], 'update')} of client {r['client']} in {r['doc']}"
            + (" (the whole document)" if r["whole_document"] else "")
            for r in rows[:5]
        ]
        more = f" and {len(rows) - 5} more" if len(rows) > 5 else ""
        lacks = "lacks" if lacking == "peer" else "has what this node lacks:"
        age = "" if rows[0]["fresh"] else " (as of its last state-vector exchange)"
        what = f"{name} {lacks} {'; '.join(parts)}{more}{age}"
        if not peer["connected"]:
            fix = (
                "it catches up when it is back: start it"
                if lacking == "peer"
                else "start it, so this node gets those updates (they exist only there)"
            )
            out.append(finding("problem", "replicas", name, what, fix))
        else:
            out.append(
                finding(
                    "warn",
                    "replicas",
                    name,
                    what,
                    "updates were in flight while checking; run the doctor again, and if it "
                    "persists look at that peer's log for refused updates",
                )
            )
    if not out:
        compared = sum(1 for p in peers.values() if p.get("last_sync"))
        out.append(
            finding(
                "ok",
                "replicas",
                "documents",
                f"every replica compared agrees ({compared} peers)",
            )
        )
    if replicas["more"]:
        out.append(
            finding(
                "warn",
                "replicas",
                "documents",
                f"{replicas['more']} more differences were not listed",
                "fix the peers above first, then run the doctor again",
            )
        )
    return out


def _gc(gc: dict[str, Any], peers: list[dict[str, Any]]) -> list[Finding]:
    by_member: dict[int, list[dict[str, Any]]] = {}
    for row in gc["holders"]:
        by_member.setdefault(row["replica"], []).append(row)
    # Which peer each member is (told in ``about`` frames, sync version 5).
    peer_of = {p["replica"]: p for p in peers if p.get("replica") is not None}
    out: list[Finding] = []
    for replica, rows in sorted(by_member.items()):
        peer = peer_of.get(replica)
        if peer is not None and peer["connected"] and all(r["reported"] for r in rows):
            # A connected member's reports trail by at most a round or two while
            # writes go on: that is catching up, not holding back.
            continue
        who = f"member {replica}" + (f" ({_peer_name(peer)})" if peer is not None else "")
        unreported = [r["doc"] for r in rows if not r["reported"]]
        behind = [r for r in rows if r["reported"]]
        bits = []
        if behind:
            docs = ", ".join(r["doc"] for r in behind[:5])
            bits.append(
                f"its reports trail the others' by "
                f"{plural(sum(r['behind'] for r in behind), 'update')} in "
                f"{plural(len(behind), 'document')} ({docs})"
            )
        if unreported:
            bits.append(
                f"it never reported {len(unreported)} documents ({', '.join(unreported[:5])})"
            )
        out.append(
            finding(
                "warn",
                "gc",
                f"member {replica}",
                f"{who} holds garbage collection back: {'; '.join(bits)}",
                f"if that node is only down or busy, this clears once it reports (every "
                f"{gc['round_s']:g} s); if it is gone for good, `edgestate forget {replica} --yes`",
            )
        )
    if not out:
        out.append(
            finding(
                "ok",
                "gc",
                "members",
                f"no member holds garbage collection back ({len(gc['members'])} members)",
            )
        )
    return out
