"""Module version order (semver 2.0 precedence) and the downgrade rule of a deploy.

Manifest versions look like ``1.2.3``, optionally with a pre-release
(``1.2.3-rc.1``) and build metadata (``1.2.3+build.5``). Precedence follows semver:
numeric fields in order, a pre-release below its release, pre-release identifiers
compared one by one (numbers numerically and below words), build metadata ignored.
"""

from __future__ import annotations

from edgestate.errors import ModuleDowngradeError, ModuleVersionReusedError

# A pre-release identifier's sort key: numbers before words, each in its own order.
_Ident = tuple[int, int, str]


def version_key(version: str) -> tuple[int, int, int, int, tuple[_Ident, ...]]:
    """A sort key giving ``version`` its semver precedence.

    ``version`` has passed the manifest's check (three dot-separated numbers first).
    """
    core, _, _build = version.partition("+")  # build metadata has no precedence
    numbers, dash, pre = core.partition("-")
    major, minor, patch = (int(part) for part in numbers.split("."))
    idents = tuple(
        (0, int(part), "") if part.isdigit() else (1, 0, part) for part in pre.split(".")
    )
    # A release (no pre-release) sorts above every pre-release of its numbers.
    return (major, minor, patch, 0 if dash else 1, idents if dash else ())


def check_upgrade(
    name: str,
    offered: str,
    offered_digest: str,
    active: str | None,
    active_digest: str | None,
) -> None:
    """Refuse a deploy of ``offered`` over the cluster's ``active`` version.

    Lower precedence is a downgrade; equal precedence with other bytes
    (``*_digest``: of wasm and manifest) reuses a version number for another
    build. Either is refused, naming the way to force it; the identical bundle
    again is allowed (a retried deploy).
    """
    if active is None or active_digest is None:
        return
    new, old = version_key(offered), version_key(active)
    if new < old:
        raise ModuleDowngradeError(
            f"module {name!r}: {offered} is lower than the active version {active}; "
            f"roll back with `edgestate rollback {name} {offered}` if it is kept, or "
            "deploy with --allow-downgrade (API: ?allow_downgrade=true) if it is meant"
        )
    if new == old and offered_digest != active_digest:
        raise ModuleVersionReusedError(
            f"module {name!r}: version {offered} is active with other wasm or manifest "
            "bytes; two builds under one version number cannot be told apart, so bump "
            "the version, or deploy with --allow-downgrade (API: ?allow_downgrade=true) "
            "to replace it anyway"
        )
