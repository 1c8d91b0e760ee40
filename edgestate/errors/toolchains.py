"""Errors of guest module toolchains (``edgestate.guest.toolchains``).

Part of the tree in ``edgestate.errors`` (its docstring); import from there."""

from __future__ import annotations

from edgestate.errors.base import EdgestateError


class ToolchainError(EdgestateError):
    """No usable compiler for a guest module's language (rustc without the
    wasm32 target, no ``asc``, no ``ziglang``), or a build it ran failed; the
    message says which toolchains were tried and how to install one."""

    code = "toolchain_unavailable"
