"""Reading a JSON request body: the one helper every admin route that takes JSON uses.

Whatever a client sends, the answer is a 400 in the JSON error shape naming what
is wrong, never a 500: the strict reader (:mod:`edgestate.jsonstrict`: not UTF-8,
empty, not JSON, a repeated key, NaN, Infinity or 1e999, an integer of more than
Python's 4,300 digits) with nesting bounded by ``MAX_JSON_DEPTH``, and an object
at the top. The size bound is aiohttp's ``client_max_size`` (a 413 from the
middleware).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from edgestate import jsonstrict
from edgestate.errors import BadRequestError

# Admin bodies are shallow: a batch ({"ops": [{...}]}) is 3 levels deep, a
# deploy 2. The bound leaves room for more and keeps json's recursive parser,
# and anything walking the result, far from Python's recursion limit (100,000
# '[' would otherwise end in a RecursionError, a 500).
MAX_JSON_DEPTH = 32


def parse_json_object(raw: bytes, what: str) -> dict[str, Any]:
    """``raw`` as a JSON object, or a 400-class error saying why it is not one.

    ``what`` names the body in the message ("the batch body", "the deploy body").
    """
    value = jsonstrict.loads(raw, what=what, invalid=BadRequestError, max_depth=MAX_JSON_DEPTH)
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
