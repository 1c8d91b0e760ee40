"""Reading admin request bodies: strict JSON, one rule for every route."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from edgestate import jsonstrict
from edgestate.errors import DuplicateKeyError, InvalidJSONError, NonFiniteNumberError


async def json_body(request: web.Request, what: str) -> Any:
    """The request's body as strict JSON (:mod:`edgestate.jsonstrict`).

    A body that is not JSON is a 400 ``bad_request``; one with a repeated key or
    NaN/Infinity is a 400 with its own code (``duplicate_json_key``,
    ``non_finite_json_number``), raised for the middleware to answer.
    """
    raw = await request.read()
    try:
        return jsonstrict.loads(raw, what=what)
    except (DuplicateKeyError, NonFiniteNumberError):
        raise
    except InvalidJSONError as exc:
        raise web.HTTPBadRequest(reason=str(exc)) from None
