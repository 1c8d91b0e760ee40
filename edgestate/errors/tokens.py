"""Errors of client tokens (scoped ``/yjs`` credentials).

Part of the tree in ``edgestate.errors`` (its docstring); import from there."""

from __future__ import annotations

from edgestate.errors.base import EdgestateError


class TokenError(EdgestateError):
    """A client token could not be made, found or used."""

    code = "token_error"


class InvalidGrantError(TokenError):
    """A token grant that cannot be made: bad document pattern, expiry or flag mix."""

    code = "invalid_grant"


class UnknownTokenError(TokenError):
    """No client token with that id was issued by this node."""

    code = "unknown_token"


class InvalidTokenError(TokenError):
    """A credential that is neither the admin token nor a client token of this node."""

    code = "invalid_token"


class TokenExpiredError(TokenError):
    """A client token used after its expiry."""

    code = "token_expired"


class TokenRevokedError(TokenError):
    """A client token used after ``edgestate token revoke``."""

    code = "token_revoked"


class TokenScopeError(TokenError):
    """A valid client token used for a document or action it does not grant."""

    code = "token_scope"
