"""HTTP calls to a real node whose every response is checked against schemas/openapi.yaml."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from openapi_core import OpenAPI
from openapi_core.datatypes import RequestParameters
from werkzeug.datastructures import Headers, ImmutableMultiDict

SPEC = Path(__file__).resolve().parents[2] / "schemas" / "openapi.yaml"


@cache
def spec() -> OpenAPI:
    return OpenAPI.from_file_path(str(SPEC))


@dataclass
class _Request:
    host_url: str
    path: str
    method: str
    body: bytes | None
    content_type: str
    parameters: RequestParameters = field(default_factory=RequestParameters)


@dataclass
class _Response:
    status_code: int
    data: bytes
    content_type: str
    headers: Headers


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def call(
    base: str,
    method: str,
    path: str,
    body: bytes | None = None,
    *,
    token: str | None = None,
    content_type: str = "application/json",
    query: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    validate: bool = True,
) -> Reply:
    """Make the call, validate the reply against the OpenAPI description, return it."""
    url = base + urllib.parse.quote(path) + ("?" + urllib.parse.urlencode(query) if query else "")
    req = urllib.request.Request(url, data=body, method=method)
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    if body is not None:
        req.add_header("Content-Type", content_type)
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            reply = Reply(resp.status, dict(resp.headers), resp.read())
    except urllib.error.HTTPError as exc:
        reply = Reply(exc.code, dict(exc.headers), exc.read())
    if validate:
        request = _Request(
            host_url=base,
            path=path,
            method=method.lower(),
            body=body,
            content_type=content_type if body is not None else "",
            parameters=RequestParameters(
                query=ImmutableMultiDict(list((query or {}).items())),
                header=Headers({"Authorization": f"Bearer {token}"} if token else {}),
            ),
        )
        response = _Response(
            reply.status,
            reply.body,
            reply.headers.get("Content-Type", "").split(";")[0].strip(),
            Headers(reply.headers),
        )
        spec().validate_response(request, response)  # raises with what did not match
    return reply
