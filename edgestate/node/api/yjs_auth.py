"""Who may open ``/yjs/{doc}``: the admin token, a cluster certificate, or a client token.

The credential comes as y-websocket passes parameters (``params: {token}`` puts
``?token=...`` in the URL, since browsers cannot set headers on a WebSocket) or
as ``Authorization: Bearer <token>``; the header wins when both are given. The
admin token and a verified cluster certificate grant everything; a client token
(see :mod:`edgestate.node.tokens`) grants what it was made with.
"""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING

from aiohttp import web

from edgestate.errors import InvalidTokenError
from edgestate.node.api.certified import client_certified
from edgestate.sync.yjs import FULL_ACCESS, Authorize, YjsAccess

if TYPE_CHECKING:
    from edgestate.node.client_tokens import ClientTokens


def yjs_authorizer(admin_token: str, tokens: ClientTokens) -> Authorize:
    """The ``authorize`` of the node's y-websocket endpoint."""
    admin = admin_token.encode()

    def authorize(request: web.Request, doc: str) -> YjsAccess:
        if client_certified(request):
            return FULL_ACCESS  # verified against the cluster CA in the TLS handshake
        token = credential(request)
        if not token:
            raise InvalidTokenError(
                "/yjs needs a token: ?token=<token> (y-websocket: params: {token}) or "
                "'Authorization: Bearer <token>'; make one with 'edgestate token create'"
            )
        if hmac.compare_digest(token.encode(), admin):
            return FULL_ACCESS
        record = tokens.authorize(token, doc)
        return YjsAccess(
            write=not record.read_only,
            create=record.create,
            credential=record.id,
            expires_at=record.expires_at,
        )

    return authorize


def credential(request: web.Request) -> str:
    """The bearer token of the header, else the ``token`` query parameter ('' if none)."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if header and scheme.lower() == "bearer":
        return token.strip()
    return request.query.get("token", "")
