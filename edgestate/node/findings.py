"""The doctor's rules: diagnostics facts (``node/diagnostics.py``) in, findings out.

This module holds the finding shape and the checks of the node itself (certificate,
trust policy, disk and map); ``cluster_findings`` those of its peers and the
entry point, :func:`~edgestate.node.cluster_findings.findings_of`.

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

_SEVERITY_ORDER = {"ok": 0, "warn": 1, "problem": 2}


def finding(severity: str, check: str, subject: str, what: str, fix: str = "") -> Finding:
    """One finding (``fix`` is empty for ``ok``)."""
    return {"severity": severity, "check": check, "subject": subject, "what": what, "fix": fix}


def overall(found: list[Finding]) -> str:
    """The worst severity among ``found`` (``ok`` for none)."""
    return max((f["severity"] for f in found), key=_SEVERITY_ORDER.__getitem__, default="ok")


def node_findings(facts: dict[str, Any]) -> list[Finding]:
    """The findings about the node itself: its certificate, trust policy, storage."""
    now = float(facts["checked_at"])
    return [*_tls(facts, now), *_trust(facts["trust"]), *_storage(facts["storage"])]


def expiry(check: str, subject: str, not_after: float, now: float, fix: str) -> Finding:
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
    out = [expiry("tls", "this node", tls["cert_not_after"], now, renew)]
    ca = expiry(
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


def plural(count: int, noun: str) -> str:
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
