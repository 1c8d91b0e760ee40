"""The doctor's rules: diagnostics facts (``node/diagnostics.py``) in, findings out.

A finding is ``{"severity", "check", "subject", "what", "fix"}``: severity ``ok``,
``warn`` (worth a look, nothing is broken yet) or ``problem`` (something is broken
or about to be: ``edgestate doctor`` exits 1). ``what`` says what was found and
``fix`` what to do about it, each one plain sentence. Every check says ``ok`` when
it passes, so the report shows what was looked at, not only what failed.

What depends on clocks here (why skew is checked at all): Yjs itself orders by
logical clocks and needs none. Wall clocks reach client-token expiry
(``node/tokens.py``), the age of members that never reported (``forget_after_s``,
``sync/frontier.py``), ``last_sync`` and certificate validity (a node whose clock
is far off sees a valid certificate as not yet valid or expired), and every log
line operators compare across nodes.
"""

from __future__ import annotations

import time
from typing import Any

Finding = dict[str, str]

DAY_S = 86400.0
# A certificate this close to its notAfter is a warning: two weeks is time to issue
# and roll out a new one (`edgestate cluster issue`) without a hurry; expired is a
# problem (the TLS handshake refuses it, the node drops out of the cluster).
CERT_WARN_S = 14 * DAY_S
# Below this share of the disk (or of the LMDB map) free, writes may fail any time:
# a burst of writes or a compaction (which writes a snapshot beside the log) can
# take that much, and a full map or disk fails every write with MapFullError.
MIN_FREE_SHARE = 0.10
# Clock skew with a peer (sync version 5 ``about`` frames; the reading includes the
# one-way transit time, milliseconds on a LAN). Over a second, log lines of two
# nodes no longer line up and ``last_sync`` ages mislead; over five minutes a
# certificate issued on one node (backdated 5 minutes, sync/tls.py) is not yet
# valid on the other, whose TLS handshake then refuses it.
CLOCK_WARN_S = 1.0
CLOCK_PROBLEM_S = 300.0

_SEVERITY_ORDER = {"ok": 0, "warn": 1, "problem": 2}


def finding(severity: str, check: str, subject: str, what: str, fix: str = "") -> Finding:
    """One finding (``fix`` is empty for ``ok``)."""
    return {"severity": severity, "check": check, "subject": subject, "what": what, "fix": fix}


def overall(found: list[Finding]) -> str:
    """The worst severity among ``found`` (``ok`` for none)."""
    return max((f["severity"] for f in found), key=_SEVERITY_ORDER.__getitem__, default="ok")


def findings_of(facts: dict[str, Any]) -> list[Finding]:
    """Every finding of one node's diagnostics, node checks first, then each peer."""
    now = float(facts["checked_at"])
    out: list[Finding] = []
    out += _tls(facts, now)
    out += _trust(facts["trust"])
    out += _storage(facts["storage"])
    out += _peers(facts["peers"], now)
    out += _clocks(facts["peers"])
    out += _replicas(facts["replicas"], {p["node_id"]: p for p in facts["peers"]})
    out += _gc(facts["gc"], facts["peers"])
    return out


def _expiry(check: str, subject: str, not_after: float, now: float, fix: str) -> Finding:
    left = not_after - now
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(not_after))
    if left <= 0:
        return finding("problem", check, subject, f"the certificate expired on {when}", fix)
    if left < CERT_WARN_S:
        days = left / DAY_S
        return finding(
            "warn", check, subject, f"the certificate expires in {days:.1f} days ({when})", fix
        )
    return finding("ok", check, subject, f"the certificate is valid until {when}")


def _tls(facts: dict[str, Any], now: float) -> list[Finding]:
    tls, node = facts["tls"], facts["node"]
    cluster = str(node["cluster_id"])
    if not tls["enabled"]:
        return [
            finding(
                "warn",
                "tls",
                "this node",
                f"sync runs in insecure mode (cluster {cluster}): no TLS, any host may join",
                "for anything beyond local development, make a cluster CA with "
                "`edgestate cluster init` and give each node a certificate (docs/doctor.md)",
            )
        ]
    if tls.get("error"):
        return [
            finding(
                "problem",
                "tls",
                "this node",
                f"cannot read the node's certificate files: {tls['error']}",
                "restore the node's certificate, key and CA files, then restart it",
            )
        ]
    renew = "issue a new node certificate with `edgestate cluster issue` and restart the node"
    out = [_expiry("tls", "this node", tls["cert_not_after"], now, renew)]
    ca = _expiry(
        "tls",
        "cluster CA",
        tls["ca_not_after"],
        now,
        "make a new cluster CA and reissue every node certificate before this date",
    )
    if ca["severity"] != "ok":
        out.append(ca)
    out[0]["what"] += f"; cluster {cluster[:16]}"
    return out


def _trust(trust: dict[str, Any]) -> list[Finding]:
    out: list[Finding] = []
    path = trust["path"]
    if trust["file_error"]:
        out.append(
            finding(
                "problem",
                "trust",
                "trust policy",
                f"the trust policy file {path} does not load ({trust['file_error']}); "
                "the policy in force is the one loaded before",
                "fix the file (schemas/trust-policy.schema.json), then `edgestate trust reload`",
            )
        )
    elif trust["matches_file"] is False:
        out.append(
            finding(
                "warn",
                "trust",
                "trust policy",
                f"{path} changed since the node loaded it: the policy in force is the old one",
                "run `edgestate trust reload` (or send the node SIGHUP) to apply the file",
            )
        )
    if not trust["publishers"]:
        where = "exists but trusts no publisher" if trust["exists"] else "does not exist"
        out.append(
            finding(
                "warn",
                "trust",
                "trust policy",
                f"{path} {where}: every module deploy is refused",
                "add your publishers' keys to the trust policy and `edgestate trust reload`",
            )
        )
    for refused in trust["refused_modules"]:
        out.append(
            finding(
                "problem",
                "trust",
                f"module {refused['name']}",
                f"deployed in the cluster but refused here: {refused['error']}",
                "trust its publisher in this node's policy (or remove the module with "
                "`edgestate undeploy`), then `edgestate trust reload`",
            )
        )
    if not out:
        names = ", ".join(trust["publishers"])
        out.append(finding("ok", "trust", "trust policy", f"publishers trusted: {names}"))
    return out


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def _share(free: int, total: int) -> float:
    return free / total if total > 0 else 1.0


def _storage(storage: dict[str, Any]) -> list[Finding]:
    out: list[Finding] = []
    disk = _share(storage["disk_free_bytes"], storage["disk_total_bytes"])
    map_free = storage["map_size"] - storage["map_used_bytes"]
    mapped = _share(map_free, storage["map_size"])
    gib = 1 << 30
    if disk < MIN_FREE_SHARE:
        out.append(
            finding(
                "problem",
                "disk",
                storage["data_dir"],
                f"only {disk:.1%} of the disk is free ({storage['disk_free_bytes'] / gib:.2f} GiB)",
                "free space on that filesystem or move the data directory to a larger one",
            )
        )
    else:
        out.append(
            finding(
                "ok",
                "disk",
                storage["data_dir"],
                f"{disk:.0%} of the disk free ({storage['disk_free_bytes'] / gib:.1f} GiB)",
            )
        )
    if mapped < MIN_FREE_SHARE:
        out.append(
            finding(
                "problem",
                "map",
                "LMDB map",
                f"the store uses {storage['map_used_bytes'] / gib:.2f} of its "
                f"{storage['map_size'] / gib:.2f} GiB map: {mapped:.1%} left",
                "raise store.map_size in the node's config and restart it (the file grows "
                "only as it is used)",
            )
        )
    else:
        out.append(
            finding(
                "ok",
                "map",
                "LMDB map",
                f"{mapped:.0%} of the {storage['map_size'] / gib:.0f} GiB map is free",
            )
        )
    return out


def _peer_name(peer: dict[str, Any]) -> str:
    node = (peer["node_id"] or "?")[:16]
    return f"peer {node} ({peer['address']})" if peer["address"] else f"peer {node}"


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
                    f"start the node at {peer['address']} (or check the network and its "
                    "sync port); if it is gone for good, remove it from this node's peers",
                )
            )
        if peer["cert_not_after"] is not None:
            expiry = _expiry(
                "tls",
                name,
                peer["cert_not_after"],
                now,
                "issue that node a new certificate with `edgestate cluster issue` and restart it",
            )
            if expiry["severity"] != "ok":
                out.append(expiry)
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
            f"{_n(r['updates'], 'update')} of client {r['client']} in {r['doc']}"
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
                f"{_n(sum(r['behind'] for r in behind), 'update')} in "
                f"{_n(len(behind), 'document')} ({docs})"
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
