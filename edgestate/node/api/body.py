"""Reading a JSON request body: the one helper every admin route that takes JSON uses.

Whatever a client sends, the answer is a :class:`BadRequestError` naming what is
wrong (a 400 in the JSON error shape), never a 500: not UTF-8, not JSON, a
number JSON cannot carry faithfully (NaN, Infinity, 1e999, an integer of more
than Python's 4,300 digits), nesting deeper than ``MAX_JSON_DEPTH``, or not an
object. The size bound is aiohttp's ``client_max_size`` (a 413 from the middleware).
"""

from __future__ import annotations

import json
import math
from typing import Any

from aiohttp import web

from edgestate.errors import BadRequestError

# Admin bodies are shallow: a batch ({"ops": [{...}]}) is 3 levels deep, a
# deploy 2. The bound leaves room for more and keeps json's recursive parser,
# and anything walking the result, far from Python's recursion limit (100,000
# '[' would otherwise end in a RecursionError, a 500).
MAX_JSON_DEPTH = 32


def _refuse_constant(name: str) -> Any:
    raise BadRequestError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise BadRequestError(f"the number {text[:40]} is out of range")
    return value


def depth_of(value: Any) -> int:
    """How deeply ``value`` nests lists and dicts (a scalar is 0), without recursion.

    Level by level, stopping past ``MAX_JSON_DEPTH``; only containers are kept.
    """
    depth = 0
    level: list[Any] = [value] if isinstance(value, dict | list) else []
    while level and depth <= MAX_JSON_DEPTH:
        depth += 1
        below: list[Any] = []
        for item in level:
            children = item.values() if isinstance(item, dict) else item
            below.extend(c for c in children if isinstance(c, dict | list))
        level = below
    return depth


def parse_json_object(raw: bytes, what: str) -> dict[str, Any]:
    """``raw`` as a JSON object, or :class:`BadRequestError` saying why it is not one.

    ``what`` names the body in the message ("the batch body", "the deploy body").
    """
    if not raw.strip():
        raise BadRequestError(f"{what} is empty; a JSON object was expected")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequestError(f"{what} is not UTF-8 (invalid byte at offset {exc.start})") from exc
    try:
        value = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except RecursionError as exc:
        raise BadRequestError(f"{what} nests deeper than {MAX_JSON_DEPTH} levels") from exc
    except json.JSONDecodeError as exc:
        raise BadRequestError(f"{what} is not JSON: {exc}") from exc
    except ValueError as exc:  # an integer of more digits than int() takes
        raise BadRequestError(f"{what} holds a number out of range: {exc}") from exc
    if depth_of(value) > MAX_JSON_DEPTH:
        raise BadRequestError(f"{what} nests deeper than {MAX_JSON_DEPTH} levels")
    if not isinstance(value, dict):
        raise BadRequestError(f"{what} must be a JSON object, got {_json_type(value)}")
    return value


async def read_json_object(request: web.Request, what: str) -> dict[str, Any]:
    """The request's body as a JSON object (see :func:`parse_json_object`)."""
    return parse_json_object(await request.read(), what)


def _json_type(value: Any) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "null"
    return "a number"
