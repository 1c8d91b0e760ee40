"""What the API middleware records of every request: its id, metrics and access line.

Shared by the node's middleware and an invocation worker's (which serves
``POST /v1/invoke/{module}`` itself and relays the rest to the node, where those
are observed). Kept to a few dict and attribute operations: it runs on the
invocation hot path (scripts/bench_http_metrics.py measures it).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from edgestate.node.http_metrics import method_of, route_of
from edgestate.node.logs import ACCESS_LOGGER, REQUEST_ID_HEADER, new_request_id, request_id

# The status a request is counted under when its client left before the answer
# (its handler was cancelled): nginx's convention, never sent to anyone.
CLIENT_GONE = 499

# Set by an invocation worker on what it relays (edgestate.node.workers.proxy).
CLIENT_HEADER = "X-Edgestate-Client"

# request -> its id, for the response header stamped at prepare time
REQUEST_ID_KEY = "edgestate_request_id"

access_log = logging.getLogger(ACCESS_LOGGER)

Record = Callable[[str, str, int, float], None]


async def stamp_request_id(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: echo the request id, streamed answers included."""
    rid = request.get(REQUEST_ID_KEY)
    if rid is not None:
        response.headers[REQUEST_ID_HEADER] = rid


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Answer = Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]


async def observed(
    request: web.Request, handler: Handler, answer: Answer, record: Record, access: bool
) -> web.StreamResponse:
    """``answer(request, handler)`` under the request's id, then :func:`observe` it.

    The one wrapper of the node's middleware and a worker's: the id (the client's
    ``X-Request-Id`` if sane, else a new one) is in the context for every log line
    of the request, guest lines included, and echoed by :func:`stamp_request_id`.
    """
    started = time.perf_counter()
    rid = request[REQUEST_ID_KEY] = new_request_id(request.headers.get(REQUEST_ID_HEADER))
    context = request_id.set(rid)
    response: web.StreamResponse | None = None
    status = 500
    try:
        response = await answer(request, handler)
        status = response.status
        return response
    except web.HTTPException as exc:  # a redirect, re-raised for aiohttp to send
        status = exc.status
        raise
    except asyncio.CancelledError:
        status = CLIENT_GONE
        raise
    finally:
        observe(record, access, request, response, status, time.perf_counter() - started)
        request_id.reset(context)  # after: the access line carries the id


def observe(
    record: Record,
    access: bool,
    request: web.Request,
    response: web.StreamResponse | None,
    status: int,
    seconds: float,
) -> None:
    """Count one answered request and, with ``access``, write its access line.

    The line never holds the query string (``/yjs`` takes its token there) nor any
    header: the route template, the path, and figures only.
    """
    route, method = route_of(request), method_of(request)
    record(route, method, status, seconds)
    if not access:
        return
    size = 0
    if response is not None:
        # Not yet written when the middleware returns: its body's length instead.
        size = response.body_length if response.prepared else (response.content_length or 0)
    access_log.info(
        "%s %s %d %.1fms",
        request.method,
        request.path,
        status,
        seconds * 1e3,
        extra={
            "fields": {
                "method": request.method,
                "route": route,
                "path": request.path,
                "status": status,
                "duration_ms": round(seconds * 1e3, 3),
                "bytes": size,
                "remote": _remote(request),
            }
        },
    )


def _remote(request: web.Request) -> str:
    transport = request.transport
    if transport is not None and isinstance(transport.get_extra_info("sockname"), str):
        # A unix socket: only this node's workers reach it, relaying a client whose
        # address they name (edgestate.node.workers.proxy strips a client's own).
        return request.headers.get(CLIENT_HEADER, "")
    return request.remote or ""


__all__ = [
    "CLIENT_GONE",
    "CLIENT_HEADER",
    "REQUEST_ID_KEY",
    "observe",
    "observed",
    "stamp_request_id",
]
