"""The one JSON reader for everything edgestate takes in: strict, and naming the fault.

Python's ``json`` accepts two things other readers disagree on, and a signed or
reviewed document must mean one thing to every reader:

- an object that repeats a key keeps the *last* value, while a reviewer (or
  another JSON library) may read the first. A signed manifest with two
  ``"name"`` keys would show one module to the reviewer and load another;
- ``NaN``, ``Infinity`` and ``-Infinity`` are not JSON (RFC 8259) at all, and a
  number like ``1e999`` would silently become one.

:func:`loads` refuses them, with :class:`~edgestate.errors.DuplicateKeyError` /
:class:`~edgestate.errors.NonFiniteNumberError` naming the input, the key and
the JSON path of the object holding it. Input that is not JSON at all (or not
UTF-8) raises the caller's own error class (``ManifestError`` for a manifest,
``ConfigError`` for a trust policy...; :class:`~edgestate.errors.InvalidJSONError`
by default) with line and column, so existing codes keep their meaning; so does
input nested deeper than a caller's ``max_depth`` (or Python's recursion limit)
and an integer of more digits than Python reads.
"""

from __future__ import annotations

import json
import math
from typing import Any

from edgestate.errors import (
    DuplicateKeyError,
    EdgestateError,
    InvalidJSONError,
    NonFiniteNumberError,
)


class _Repeated(dict[str, Any]):
    """An object that repeated ``key``; found, with its path, once parsing is done."""

    __slots__ = ("key",)

    def __init__(self, pairs: list[tuple[str, Any]], key: str) -> None:
        super().__init__(pairs)
        self.key = key


def _repeated(pairs: list[tuple[str, Any]]) -> _Repeated:
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            return _Repeated(pairs, key)
        seen.add(key)
    raise AssertionError("unreachable: fewer keys than pairs means a repeat")


def _constant(name: str) -> Any:
    raise NonFiniteNumberError(f"{name}, which is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise NonFiniteNumberError(f"{text[:40]}, a number out of range")
    return value


def depth_of(value: Any, limit: int) -> int:
    """How deeply ``value`` nests lists and dicts (a scalar is 0), counted level by
    level without recursion, and only as far as ``limit + 1``."""
    depth = 0
    level: list[Any] = [value] if isinstance(value, dict | list) else []
    while level and depth <= limit:
        depth += 1
        below: list[Any] = []
        for item in level:
            children = item.values() if isinstance(item, dict) else item
            below.extend(c for c in children if isinstance(c, dict | list))
        level = below
    return depth


def _find_repeat(value: Any, path: str) -> tuple[str, str] | None:
    if isinstance(value, _Repeated):
        return value.key, path
    children: Any = (
        ((f"{path}.{k}" if k.isidentifier() else f"{path}[{k!r}]", v) for k, v in value.items())
        if isinstance(value, dict)
        else ((f"{path}[{i}]", v) for i, v in enumerate(value))
        if isinstance(value, list)
        else ()
    )
    for child_path, child in children:
        found = _find_repeat(child, child_path)
        if found is not None:
            return found
    return None


def loads(
    data: bytes | str,
    *,
    what: str,
    invalid: type[EdgestateError] = InvalidJSONError,
    max_depth: int | None = None,
) -> Any:
    """Decode ``data`` (UTF-8 bytes or text) as strict JSON; ``what`` names it in errors.

    Raises :class:`DuplicateKeyError` or :class:`NonFiniteNumberError` for input
    Python would accept but other readers may read differently, and ``invalid``
    for input that is not JSON, is empty, nests deeper than ``max_depth`` or
    holds an integer too long to read; never ``ValueError`` or ``RecursionError``.
    """
    try:
        text = data.decode("utf-8") if isinstance(data, bytes | bytearray) else data
    except UnicodeDecodeError as exc:
        raise invalid(f"{what} is not UTF-8 (invalid byte at offset {exc.start})") from None
    if not text.strip():
        raise invalid(f"{what} is empty; JSON was expected")
    repeats = False

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal repeats
        obj = dict(items)
        if len(obj) == len(items):
            return obj
        # Not raised here: the hook cannot know where this object sits. Marked,
        # and its path found by a walk that only a refused input pays for.
        repeats = True
        return _repeated(items)

    try:
        value = json.loads(
            text, object_pairs_hook=pairs, parse_constant=_constant, parse_float=_finite_float
        )
    except NonFiniteNumberError as exc:
        raise NonFiniteNumberError(
            f"{what} holds {exc} (NaN, Infinity and numbers past the float range are refused)"
        ) from None
    except json.JSONDecodeError as exc:
        raise invalid(
            f"{what} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except RecursionError:
        bound = f"deeper than {max_depth} levels" if max_depth is not None else "too deeply"
        raise invalid(f"{what} nests {bound}") from None
    except ValueError as exc:  # an integer of more digits than int() takes
        raise invalid(f"{what} holds a number out of range: {exc}") from None
    if max_depth is not None and depth_of(value, max_depth) > max_depth:
        raise invalid(f"{what} nests deeper than {max_depth} levels")
    found = _find_repeat(value, "$") if repeats else None
    if found is not None:
        key, path = found
        raise DuplicateKeyError(
            f"{what} repeats the key {key!r} in the object at {path}; every key must be "
            "unique (readers disagree on which copy counts)"
        )
    return value
