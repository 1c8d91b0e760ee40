"""What every route answers with: the one error shape, the status of each error."""

from __future__ import annotations

from aiohttp import web

from edgestate import errors as E

# Status per error class; the most specific class listed wins (checked in MRO order).
_STATUS: dict[type[E.EdgestateError], int] = {
    E.ModuleNotFoundError_: 404,
    E.UnknownDocumentError: 404,
    E.UnknownMemberError: 404,
    E.BadRequestError: 400,
    E.InvalidKeyError: 400,
    E.InvalidDocumentNameError: 400,
    E.SystemDocumentError: 403,
    E.InvalidCursorError: 400,
    E.InvalidJSONError: 400,
    E.WrongTypeError: 409,
    E.ValueTooLargeError: 413,
    E.OutputTooLargeError: 502,
    E.OutOfFuelError: 503,
    E.BusyError: 503,
    E.ClientGoneError: 499,  # nginx's "client closed request": written to nobody
    E.DeadlineExceededError: 504,
    E.MemoryLimitError: 507,
    E.GuestTrapError: 500,
    E.GuestStatusError: 422,
    E.InvocationError: 500,
    E.SignatureError: 403,
    E.UntrustedPublisherError: 403,
    E.PolicyViolationError: 403,
    E.ModuleOwnershipError: 409,
    E.UnknownModuleVersionError: 404,
    E.ModuleVersionError: 409,
    E.PolicyReloadError: 422,
    E.ManifestError: 422,
    E.ModuleCompileError: 422,
    E.StoreClosedError: 503,
    E.WorkerLinkError: 503,
    E.InvalidGrantError: 400,
    E.UnknownTokenError: 404,
    E.InvalidTokenError: 401,
    E.TokenExpiredError: 401,
    E.TokenRevokedError: 401,
    E.TokenScopeError: 403,
    E.EdgestateError: 500,
}


def status_for(exc: E.EdgestateError) -> int:
    """HTTP status of an error (see ``_STATUS``)."""
    for cls in type(exc).__mro__:
        if cls in _STATUS:
            return _STATUS[cls]
    return 500


def error_response(status: int, code: str, message: str) -> web.Response:
    """The one JSON error shape every route uses."""
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


def error_reply(exc: E.EdgestateError) -> web.Response:
    """The reply to ``exc``: its status and error shape, and the headers some carry
    (the guest's own status of a failed invocation, when a refused one may retry)."""
    response = error_response(status_for(exc), exc.code, str(exc))
    if isinstance(exc, E.InvocationError) and exc.guest_status is not None:
        # the guest's own status, as a successful reply carries it
        response.headers["X-Edgestate-Status"] = str(exc.guest_status)
    if isinstance(exc, E.BusyError):
        response.headers["Retry-After"] = str(exc.retry_after_s)
    if isinstance(exc, E.DeadlineExceededError):
        if exc.ran_ns is not None:
            # How long the guest itself ran before its budget stopped it, as a
            # successful reply says how long it ran.
            response.headers["X-Edgestate-Execute-Us"] = f"{exc.ran_ns / 1000:.1f}"
        if exc.budget_ns is not None:
            # And its budget's clock then, which counts from the request's arrival.
            response.headers["X-Edgestate-Budget-Us"] = f"{exc.budget_ns / 1000:.1f}"
    return response
