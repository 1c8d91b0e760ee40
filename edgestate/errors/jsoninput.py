"""Errors of strict JSON input (``edgestate.jsonstrict``).

Part of the tree in ``edgestate.errors`` (its docstring); import from there."""

from __future__ import annotations

from edgestate.errors.base import EdgestateError


class InvalidJSONError(EdgestateError):
    """JSON input (manifest, trust policy, API body...) that is not strict JSON.

    The message names the input and where in it the fault is.
    """

    code = "invalid_json"


class DuplicateKeyError(InvalidJSONError):
    """A JSON object repeating a key: readers disagree on which copy counts."""

    code = "duplicate_json_key"


class NonFiniteNumberError(InvalidJSONError):
    """``NaN``, ``Infinity`` or ``-Infinity`` in JSON input (not JSON per RFC 8259)."""

    code = "non_finite_json_number"
