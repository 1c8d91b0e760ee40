"""Admin routes over client tokens: make one, list them, revoke one.

``POST /v1/admin/tokens`` takes ``{"docs": [...], "read_only", "create",
"expires_in_s", "label"}`` and answers 201 with the token, shown this once.
"""

from __future__ import annotations

import json
import math
from typing import Any

from aiohttp import web

from edgestate.errors import InvalidGrantError
from edgestate.node.api.protocol import Tokens

_FIELDS = {"docs", "read_only", "create", "expires_in_s", "label"}


class TokenRoutes:
    """``/v1/admin/tokens`` and ``/v1/admin/tokens/{id}``."""

    def __init__(self, node: Tokens) -> None:
        self.node = node

    async def list(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"tokens": self.node.tokens.rows()})

    async def create(self, request: web.Request) -> web.StreamResponse:
        body = _grant_body(await request.read())
        token, record = await self.node.tokens.issue(
            body["docs"],
            read_only=_flag(body, "read_only"),
            create=_flag(body, "create"),
            expires_in_s=_expiry(body.get("expires_in_s")),
            label=_label(body.get("label")),
        )
        return web.json_response({"token": token, **record.row(record.created_at)}, status=201)

    async def revoke(self, request: web.Request) -> web.StreamResponse:
        record = await self.node.tokens.revoke(request.match_info["id"])
        return web.json_response(record.row(record.created_at) | {"state": "revoked"})


def _grant_body(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise InvalidGrantError(f"the body is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise InvalidGrantError('the body is a JSON object: {"docs": [...], ...}')
    unknown = set(body) - _FIELDS
    if unknown:
        raise InvalidGrantError(
            f"unknown field(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(_FIELDS))}"
        )
    docs = body.get("docs")
    if not isinstance(docs, list) or not all(isinstance(d, str) for d in docs):
        raise InvalidGrantError('"docs" is a list of document patterns (strings)')
    return body


def _flag(body: dict[str, Any], name: str) -> bool:
    value = body.get(name, False)
    if not isinstance(value, bool):
        raise InvalidGrantError(f'"{name}" is true or false, got {value!r}')
    return value


def _expiry(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidGrantError(f'"expires_in_s" is a number of seconds or null, got {value!r}')
    return float(value)


def _label(value: object) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise InvalidGrantError(f'"label" is a string or null, got {value!r}')
