"""Errors of the node's HTTP API requests.

Part of the tree in ``edgestate.errors`` (its docstring); import from there."""

from __future__ import annotations

from edgestate.errors.base import EdgestateError


class BadRequestError(EdgestateError):
    """A request the API cannot take: a body that is not JSON, nested too deep or of
    the wrong shape, or a parameter out of its range. Answered with a 400."""

    code = "bad_request"
