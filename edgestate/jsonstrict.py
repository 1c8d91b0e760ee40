"""The one JSON reader for everything edgestate takes in: strict, and naming the fault.

Python's ``json`` accepts two things other readers disagree on, and a signed or
reviewed document must mean one thing to every reader:

- an object that repeats a key keeps the *last* value, while a reviewer (or
  another JSON library) may read the first. A signed manifest with two
  ``"name"`` keys would show one module to the reviewer and load another;
- ``NaN``, ``Infinity`` and ``-Infinity`` are not JSON (RFC 8259) at all.

:func:`loads` refuses both, with :class:`~edgestate.errors.DuplicateKeyError` /
:class:`~edgestate.errors.NonFiniteNumberError` naming the input, the key and
the JSON path of the object holding it. Input that is not JSON at all (or not
UTF-8) raises the caller's own error class (``ManifestError`` for a manifest,
``ConfigError`` for a trust policy...; :class:`~edgestate.errors.InvalidJSONError`
by default) with line and column, so existing codes keep their meaning.
"""

from __future__ import annotations

import json
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
    raise NonFiniteNumberError(f"{name} is not a JSON number")


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


def loads(data: bytes | str, *, what: str, invalid: type[EdgestateError] = InvalidJSONError) -> Any:
    """Decode ``data`` (UTF-8 bytes or text) as strict JSON; ``what`` names it in errors.

    Raises :class:`DuplicateKeyError` or :class:`NonFiniteNumberError` for input
    Python would accept but other readers may read differently, and ``invalid``
    for input that is not JSON; never ``ValueError``.
    """
    try:
        text = data.decode("utf-8") if isinstance(data, bytes | bytearray) else data
    except UnicodeDecodeError as exc:
        raise invalid(f"{what} is not UTF-8 (byte {exc.start})") from None
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
        value = json.loads(text, object_pairs_hook=pairs, parse_constant=_constant)
    except NonFiniteNumberError as exc:
        raise NonFiniteNumberError(
            f"{what} holds {exc}: NaN and Infinity are refused (RFC 8259)"
        ) from None
    except json.JSONDecodeError as exc:
        raise invalid(
            f"{what} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except RecursionError:
        raise invalid(f"{what} nests too deeply to be read") from None
    found = _find_repeat(value, "$") if repeats else None
    if found is not None:
        key, path = found
        raise DuplicateKeyError(
            f"{what} repeats the key {key!r} in the object at {path}; every key must be "
            "unique (readers disagree on which copy counts)"
        )
    return value
