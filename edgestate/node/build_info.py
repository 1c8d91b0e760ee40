"""What this node runs: its version and those of the parts its behaviour hangs on."""

from __future__ import annotations

import functools
import platform
from importlib import metadata

from edgestate import __version__


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "unknown"


@functools.cache
def build_info() -> dict[str, str]:
    """Label -> value of ``edgestate_build_info`` (read once: they never change)."""
    return {
        "version": __version__,
        "python": platform.python_version(),
        "wasmtime": _version("wasmtime"),
        "pycrdt": _version("pycrdt"),
    }


__all__ = ["build_info"]
