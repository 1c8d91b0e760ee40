"""The root of the tree: the one class every edgestate error derives from.

Part of the tree in ``edgestate.errors`` (its docstring); import from there."""

from __future__ import annotations


class EdgestateError(Exception):
    """Base of every error edgestate raises on purpose."""

    code = "edgestate_error"
