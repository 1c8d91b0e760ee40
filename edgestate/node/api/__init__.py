"""The node's HTTP API (aiohttp), described in schemas/openapi.yaml.

Routes:
    POST   /v1/invoke/{module}                     module input in, module output out
    GET    /healthz, /readyz, /metrics
    admin (Authorization: Bearer <token from DATA/admin.token>):
    GET    /v1/admin/status
    GET    /v1/admin/overview           everything the dashboard shows (one documents page)
    GET    /v1/admin/peers
    GET    /v1/admin/nats               the NATS link between sites (docs/nats.md)
    GET    /v1/admin/members            DELETE /v1/admin/members/{replica} (forget one)
    GET    /v1/admin/modules            POST (deploy a bundle)   DELETE /v1/admin/modules/{name}
    POST   /v1/admin/modules/{name}/rollback   {"version": ...}: re-activate a kept version
    POST   /v1/admin/trust-policy/reload   reread the trust policy, recheck every module
    GET    /v1/admin/diagnostics        what `edgestate doctor` checks, with findings
    GET    /v1/admin/docs
    GET    /v1/admin/docs/{doc}/keys/{key}   PUT (raw body)   DELETE
    POST   /v1/admin/docs/{doc}/keys/{key}/incr?delta=N
    POST   /v1/admin/docs/{doc}/batch        {"ops": [...]} applied atomically
    GET    /v1/admin/docs/{doc}/scan?prefix=&cursor=&limit=
    GET    /v1/admin/docs/{doc}/watch        server-sent events, one per change
    GET    /v1/admin/tokens             POST (make a client token)   DELETE /v1/admin/tokens/{id}
    GET    /yjs/{doc}?token=<token>          y-websocket sync protocol (admin or client token)
    GET    /ui, /ui/{asset}             the dashboard page (public shell; data via overview)
    GET    /                            redirects to /ui

Every error is JSON ``{"error": {"code": ..., "message": ...}}`` with a stable code
and the status below; one request's failure never disturbs another's.

The routes are written against the protocols of :mod:`.protocol` (what a node
answers), never against the node's parts: ``invoke`` (invocation, health,
metrics), ``docs`` (admin routes over documents), ``cluster`` (admin routes over
the node, its peers, members and modules). This module assembles them and holds
what every route shares: the error shape, the status per error, the middleware.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from edgestate import errors as E
from edgestate.node.api.certified import client_certified
from edgestate.node.api.cluster import ClusterRoutes
from edgestate.node.api.dashboard import DashboardRoutes
from edgestate.node.api.docs import DocumentRoutes
from edgestate.node.api.invoke import InvocationRoutes
from edgestate.node.api.observe import observed, stamp_request_id
from edgestate.node.api.protocol import Guarded, NodeApi
from edgestate.node.api.responses import error_reply, error_response, status_for
from edgestate.node.api.tokens import TokenRoutes

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Answer = Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]

log = logging.getLogger("edgestate.node.api")

INVOKE_KEY: web.AppKey[NodeApi] = web.AppKey("node")


def build_app(node: NodeApi) -> web.Application:
    """The API application of ``node``."""
    limits = node.api_config
    app = web.Application(
        middlewares=[api_middleware(node)],
        client_max_size=max(limits.max_body_bytes, limits.max_admin_body_bytes),
    )
    app[INVOKE_KEY] = node
    app.on_response_prepare.append(stamp_request_id)
    invoke, cluster, docs = InvocationRoutes(node), ClusterRoutes(node), DocumentRoutes(node)
    tokens, dashboard = TokenRoutes(node), DashboardRoutes(node)
    app.add_routes(
        [
            web.post("/v1/invoke/{module}", invoke.invoke),
            web.get("/healthz", invoke.healthz),
            web.get("/readyz", invoke.readyz),
            web.get("/metrics", invoke.metrics),
            web.get("/v1/admin/status", cluster.status),
            web.get("/v1/admin/peers", cluster.peers),
            web.get("/v1/admin/nats", cluster.nats),
            web.get("/v1/admin/members", cluster.members),
            web.delete("/v1/admin/members/{replica}", cluster.forget_member),
            web.get("/v1/admin/modules", cluster.modules),
            web.post("/v1/admin/modules", cluster.deploy),
            web.delete("/v1/admin/modules/{name}", cluster.remove),
            web.post("/v1/admin/modules/{name}/rollback", cluster.rollback),
            web.post("/v1/admin/trust-policy/reload", cluster.reload_trust_policy),
            web.get("/v1/admin/diagnostics", cluster.diagnostics),
            web.get("/v1/admin/docs", docs.docs),
            web.get("/v1/admin/docs/{doc}/keys/{key}", docs.get_key),
            web.put("/v1/admin/docs/{doc}/keys/{key}", docs.put_key),
            web.delete("/v1/admin/docs/{doc}/keys/{key}", docs.delete_key),
            web.post("/v1/admin/docs/{doc}/keys/{key}/incr", docs.incr_key),
            web.post("/v1/admin/docs/{doc}/batch", docs.batch),
            web.get("/v1/admin/docs/{doc}/scan", docs.scan),
            web.get("/v1/admin/docs/{doc}/watch", docs.watch),
            web.get("/v1/admin/tokens", tokens.list),
            web.post("/v1/admin/tokens", tokens.create),
            web.delete("/v1/admin/tokens/{id}", tokens.revoke),
            web.get("/v1/admin/overview", dashboard.overview),
            web.get("/", dashboard.root),
            web.get("/ui", dashboard.index),
            web.get("/ui/", dashboard.index),
            web.get("/ui/{asset}", dashboard.asset),
            *node.yjs_routes(),
        ]
    )
    return app


def api_middleware(node: Guarded) -> Any:
    """Errors to JSON for every route; bearer-token check for admin routes; the
    request id, HTTP metrics and access line of every request (:mod:`.observe`).

    One middleware, not several: it runs on the invocation hot path.
    """
    admin_token = node.admin_token.encode()
    answer = _answer(node, admin_token)
    access = node.api_config.access_log
    record = node.count_request

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        return await observed(request, handler, answer, record, access)

    return middleware


def _answer(node: Guarded, admin_token: bytes) -> Answer:
    async def answer(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            # /yjs/ checks its own credentials (client tokens too): node/api/yjs_auth.py
            if request.path.startswith("/v1/admin/"):
                refused = _check_token(request, admin_token, node)
                if refused is not None:
                    return refused
            return await handler(request)
        except E.EdgestateError as exc:
            node.count_http_error(exc.code)
            return error_reply(exc)
        except web.HTTPRequestEntityTooLarge as exc:
            node.count_http_error("body_too_large")
            return error_response(413, "body_too_large", exc.text or "request body too large")
        except web.HTTPException as exc:
            if exc.status >= 400:
                code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status, "bad_request")
                node.count_http_error(code)
                return error_response(exc.status, code, exc.reason)
            raise
        except ConnectionResetError:
            # The body ended before its Content-Length (the client stopped sending or
            # left): a client's mistake, answered if it still listens, not a traceback.
            node.count_http_error("bad_request")
            return error_response(400, "bad_request", "the request body ended early")
        except Exception:
            # A bug, not the client's fault: still the JSON shape (aiohttp's own
            # answer is a text/plain 500), with the traceback in the log only.
            log.exception("%s %s failed unexpectedly", request.method, request.path)
            node.count_http_error("internal_error")
            return error_response(500, "internal_error", "the node failed to answer; see its log")

    return answer


def _check_token(request: web.Request, admin_token: bytes, node: Guarded) -> web.Response | None:
    if client_certified(request):
        # TLS verified this certificate against the cluster CA (and its CRL) in
        # the handshake (ours, or a worker's): a cluster member is admin.
        return None
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        node.count_http_error("unauthorized")
        return error_response(
            401,
            "unauthorized",
            "admin routes need 'Authorization: Bearer <token>' (the token is in "
            f"{node.token_path})",
        )
    if not hmac.compare_digest(token.encode(), admin_token):
        node.count_http_error("forbidden")
        return error_response(403, "forbidden", "the bearer token is not this node's")
    return None


__all__ = ["INVOKE_KEY", "api_middleware", "build_app", "error_response", "status_for"]
