"""The node's HTTP API (aiohttp), described in schemas/openapi.yaml.

Routes:
    POST   /v1/invoke/{module}                     module input in, module output out
    GET    /healthz, /readyz, /metrics
    admin (Authorization: Bearer <token from DATA/admin.token>):
    GET    /v1/admin/status
    GET    /v1/admin/peers
    GET    /v1/admin/members            DELETE /v1/admin/members/{replica} (forget one)
    GET    /v1/admin/modules            POST (deploy a bundle)   DELETE /v1/admin/modules/{name}
    GET    /v1/admin/docs
    GET    /v1/admin/docs/{doc}/keys/{key}   PUT (raw body)   DELETE
    POST   /v1/admin/docs/{doc}/keys/{key}/incr?delta=N
    POST   /v1/admin/docs/{doc}/batch        {"ops": [...]} applied atomically
    GET    /v1/admin/docs/{doc}/scan?prefix=&cursor=&limit=
    GET    /v1/admin/docs/{doc}/watch        server-sent events, one per change
    GET    /yjs/{doc}?token=<token>          y-websocket sync protocol (same token)

Every error is JSON ``{"error": {"code": ..., "message": ...}}`` with a stable code
and the status below; one request's failure never disturbs another's.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from edgestate import errors as E
from edgestate.store import Delete, Incr, Set, describe_value, op_from_json

if TYPE_CHECKING:
    from edgestate.node.service import Node

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Status per error class; the most specific class listed wins (checked in MRO order).
_STATUS: dict[type[E.EdgestateError], int] = {
    E.ModuleNotFoundError_: 404,
    E.UnknownDocumentError: 404,
    E.InvalidKeyError: 400,
    E.InvalidDocumentNameError: 400,
    E.InvalidCursorError: 400,
    E.WrongTypeError: 409,
    E.ValueTooLargeError: 413,
    E.OutputTooLargeError: 502,
    E.OutOfFuelError: 503,
    E.DeadlineExceededError: 504,
    E.MemoryLimitError: 507,
    E.GuestTrapError: 500,
    E.GuestStatusError: 422,
    E.InvocationError: 500,
    E.SignatureError: 403,
    E.UntrustedPublisherError: 403,
    E.PolicyViolationError: 403,
    E.ManifestError: 422,
    E.ModuleCompileError: 422,
    E.StoreClosedError: 503,
    E.EdgestateError: 500,
}

INVOKE_KEY: web.AppKey[Node] = web.AppKey("node")

# Replica ids are CRDT client ids, kept JavaScript-safe (under 2**53) for Yjs
# clients. Bounding them here also keeps an absurd id out of the frontier
# tracker, whose persisted form (msgpack) cannot hold integers past 64 bits.
MAX_REPLICA_ID = 2**53 - 1
_REPLICA_DIGITS = re.compile(r"[0-9]+")


def status_for(exc: E.EdgestateError) -> int:
    """HTTP status of an error (see ``_STATUS``)."""
    for cls in type(exc).__mro__:
        if cls in _STATUS:
            return _STATUS[cls]
    return 500


def error_response(status: int, code: str, message: str) -> web.Response:
    """The one JSON error shape every route uses."""
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


def build_app(node: Node) -> web.Application:
    """The API application of ``node``."""
    app = web.Application(
        middlewares=[_middleware(node)],
        client_max_size=max(node.config.api.max_body_bytes, node.config.api.max_admin_body_bytes),
    )
    app[INVOKE_KEY] = node
    api = _Api(node)
    app.add_routes(
        [
            web.post("/v1/invoke/{module}", api.invoke),
            web.get("/healthz", api.healthz),
            web.get("/readyz", api.readyz),
            web.get("/metrics", api.metrics),
            web.get("/v1/admin/status", api.status),
            web.get("/v1/admin/peers", api.peers),
            web.get("/v1/admin/members", api.members),
            web.delete("/v1/admin/members/{replica}", api.forget_member),
            web.get("/v1/admin/modules", api.modules),
            web.post("/v1/admin/modules", api.deploy),
            web.delete("/v1/admin/modules/{name}", api.remove),
            web.get("/v1/admin/docs", api.docs),
            web.get("/v1/admin/docs/{doc}/keys/{key}", api.get_key),
            web.put("/v1/admin/docs/{doc}/keys/{key}", api.put_key),
            web.delete("/v1/admin/docs/{doc}/keys/{key}", api.delete_key),
            web.post("/v1/admin/docs/{doc}/keys/{key}/incr", api.incr_key),
            web.post("/v1/admin/docs/{doc}/batch", api.batch),
            web.get("/v1/admin/docs/{doc}/scan", api.scan),
            web.get("/v1/admin/docs/{doc}/watch", api.watch),
            *node.yjs.routes(),
        ]
    )
    return app


def _middleware(node: Node) -> Any:
    """Errors to JSON for every route; bearer-token check for admin routes.

    One middleware, not two: it runs on the invocation hot path.
    """
    admin_token = node.admin_token.encode()

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            if request.path.startswith(("/v1/admin/", "/yjs/")):
                refused = _check_token(request, admin_token, node)
                if refused is not None:
                    return refused
            return await handler(request)
        except E.EdgestateError as exc:
            node.metrics.http_errors.labels(exc.code).inc()
            return error_response(status_for(exc), exc.code, str(exc))
        except web.HTTPRequestEntityTooLarge as exc:
            node.metrics.http_errors.labels("body_too_large").inc()
            return error_response(413, "body_too_large", exc.text or "request body too large")
        except web.HTTPException as exc:
            if exc.status >= 400:
                code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status, "bad_request")
                node.metrics.http_errors.labels(code).inc()
                return error_response(exc.status, code, exc.reason)
            raise

    return middleware


def _check_token(request: web.Request, admin_token: bytes, node: Node) -> web.Response | None:
    if request.transport is not None and request.transport.get_extra_info("peercert"):
        # TLS verified this certificate against the cluster CA (and its CRL) in
        # the handshake: a cluster member is admin.
        return None
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if not header and request.path.startswith("/yjs/"):
        # Browsers cannot set headers on a WebSocket; y-websocket's `params`
        # option puts the token in the query string instead.
        scheme, token = "bearer", request.query.get("token", "")
    if scheme.lower() != "bearer" or not token:
        node.metrics.http_errors.labels("unauthorized").inc()
        return error_response(
            401,
            "unauthorized",
            "admin routes need 'Authorization: Bearer <token>' (the token is in "
            f"{node.token_path})",
        )
    if not hmac.compare_digest(token.encode(), admin_token):
        node.metrics.http_errors.labels("forbidden").inc()
        return error_response(403, "forbidden", "the bearer token is not this node's")
    return None


class _Api:
    def __init__(self, node: Node) -> None:
        self.node = node

    # --- invocation ---------------------------------------------------------------

    async def invoke(self, request: web.Request) -> web.StreamResponse:
        node = self.node
        name = request.match_info["module"]
        if node.draining:
            return error_response(503, "shutting_down", "the node is shutting down")
        if (
            request.content_length is not None
            and request.content_length > node.config.api.max_body_bytes
        ):
            node.metrics.http_errors.labels("body_too_large").inc()
            return error_response(
                413,
                "body_too_large",
                f"input of {request.content_length} bytes is over the limit of "
                f"{node.config.api.max_body_bytes}",
            )
        body = await request.read()
        if len(body) > node.config.api.max_body_bytes:
            return error_response(413, "body_too_large", "input over the limit")
        result = await node.invoke(name, body)
        return web.Response(
            body=result.output,
            content_type="application/octet-stream",
            headers={
                "X-Edgestate-Status": str(result.status),
                "X-Edgestate-Fuel": str(result.fuel_used),
                "X-Edgestate-Instantiate-Us": f"{result.instantiate_ns / 1000:.1f}",
                "X-Edgestate-Execute-Us": f"{result.execute_ns / 1000:.1f}",
                "X-Edgestate-Commit-Us": f"{result.commit_ns / 1000:.1f}",
                "X-Edgestate-Writes": str(result.writes),
                "X-Edgestate-Host-Calls": str(result.host_calls),
            },
        )

    # --- health and metrics -------------------------------------------------------

    async def healthz(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"ok": True})

    async def readyz(self, request: web.Request) -> web.StreamResponse:
        if not self.node.ready:
            return error_response(503, "not_ready", "the node is starting or shutting down")
        return web.json_response({"ok": True})

    async def metrics(self, request: web.Request) -> web.StreamResponse:
        return web.Response(
            body=self.node.metrics.render(),
            headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"},
        )

    # --- admin --------------------------------------------------------------------

    async def status(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(self.node.status())

    async def peers(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"peers": self.node.peer_rows()})

    async def modules(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"modules": self.node.module_rows()})

    async def members(self, request: web.Request) -> web.StreamResponse:
        frontier = self.node.sync.frontier
        rows = [
            {
                "replica": replica,
                "self": replica == frontier.me,
                # Documents it reported: until it has reported one, that
                # document's garbage collection waits for it.
                "documents": len(frontier.reports.get(replica, {})),
            }
            for replica in frontier.members
        ]
        return web.json_response(
            {"me": frontier.me, "members": rows, "forgotten": sorted(frontier.forgotten)}
        )

    async def forget_member(self, request: web.Request) -> web.StreamResponse:
        raw = request.match_info["replica"]
        # int() alone would also take "+5", " 5", "1_000" and non-ASCII digits.
        if not _REPLICA_DIGITS.fullmatch(raw):
            return error_response(
                400, "bad_request", f"replica must be a non-negative integer id, got {raw!r}"
            )
        # Length first: int() refuses strings of thousands of digits (a 500).
        if len(raw) > len(str(MAX_REPLICA_ID)) or int(raw) > MAX_REPLICA_ID:
            return error_response(
                400, "bad_request", f"replica {raw} is out of range (ids are below 2**53)"
            )
        replica = int(raw)
        if replica == self.node.sync.frontier.me:
            return error_response(
                400,
                "bad_request",
                f"replica {replica} is this node's own id; a node cannot forget itself",
            )
        was_member = await self.node.sync.forget_member(replica)
        log.warning(
            "forgot cluster member %d (was a member: %s): garbage collection no longer "
            "waits for it, and it is refused as stale if it comes back",
            replica,
            was_member,
        )
        return web.json_response({"forgotten": replica, "was_member": was_member})

    async def deploy(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            return error_response(400, "bad_request", f"body is not JSON: {exc}")
        if not isinstance(body, dict):
            return error_response(400, "bad_request", "body must be a JSON object")
        parts: dict[str, bytes] = {}
        for field in ("wasm", "manifest", "signature"):
            value = body.get(field)
            if not isinstance(value, str):
                return error_response(400, "bad_request", f"field {field!r} (base64) is missing")
            try:
                parts[field] = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                return error_response(400, "bad_request", f"field {field!r} is not valid base64")
        loaded = await self.node.registry.deploy(
            parts["wasm"], parts["manifest"], parts["signature"]
        )
        return web.json_response(
            {
                "name": loaded.name,
                "version": loaded.version,
                "publisher": loaded.publisher,
                "wasm_sha256": loaded.wasm_sha256,
            },
            status=201,
        )

    async def remove(self, request: web.Request) -> web.StreamResponse:
        await self.node.registry.remove(request.match_info["name"])
        return web.json_response({"removed": request.match_info["name"]})

    async def docs(self, request: web.Request) -> web.StreamResponse:
        store = self.node.store
        rows = []
        for name in store.documents():
            info = store.document_info(name)
            rows.append(
                {
                    "name": name,
                    "keys": info.keys,
                    "value_bytes": info.value_bytes,
                    "log_entries": info.log_entries,
                    "log_bytes": info.log_bytes,
                    "snapshot_bytes": info.snapshot_bytes,
                    "collected_items": store.gc_status(name).collected_items,
                }
            )
        return web.json_response({"documents": rows})

    async def get_key(self, request: web.Request) -> web.StreamResponse:
        doc, key = request.match_info["doc"], request.match_info["key"]
        store = self.node.store
        value, counter = store.lookup(doc, key)
        if value is None:
            return error_response(404, "key_not_found", f"{doc}/{key} is absent")
        desc = describe_value(value, counter=counter)
        return web.json_response({"doc": doc, "key": key, **desc})

    async def put_key(self, request: web.Request) -> web.StreamResponse:
        doc, key = request.match_info["doc"], request.match_info["key"]
        body = await request.read()
        if request.query.get("create") == "true":
            await self.node.store.acreate_document(doc)
        await self.node.store.abatch([Set(doc, key, body)])
        return web.json_response({"doc": doc, "key": key, "ok": True, "bytes": len(body)})

    async def delete_key(self, request: web.Request) -> web.StreamResponse:
        doc, key = request.match_info["doc"], request.match_info["key"]
        await self.node.store.abatch([Delete(doc, key)])
        return web.json_response({"doc": doc, "key": key, "ok": True})

    async def incr_key(self, request: web.Request) -> web.StreamResponse:
        doc, key = request.match_info["doc"], request.match_info["key"]
        try:
            delta = int(request.query.get("delta", "1"))
        except ValueError:
            return error_response(400, "bad_request", "delta must be an integer")
        if request.query.get("create") == "true":
            await self.node.store.acreate_document(doc)
        (total,) = await self.node.store.abatch([Incr(doc, key, delta)])
        return web.json_response({"doc": doc, "key": key, "counter": total})

    async def batch(self, request: web.Request) -> web.StreamResponse:
        doc = request.match_info["doc"]
        try:
            body = await request.json()
            raw_ops = body["ops"]
            if not isinstance(raw_ops, list):
                raise TypeError("ops must be a list")
            ops = [op_from_json(doc, op) for op in raw_ops]
        except (
            json.JSONDecodeError,
            UnicodeDecodeError,
            KeyError,
            TypeError,
            ValueError,
            binascii.Error,
        ) as exc:
            return error_response(400, "bad_request", f"batch body is not valid: {exc}")
        if request.query.get("create") == "true":
            await self.node.store.acreate_document(doc)
        results = await self.node.store.abatch(ops)
        return web.json_response({"doc": doc, "applied": len(ops), "results": results})

    async def scan(self, request: web.Request) -> web.StreamResponse:
        doc = request.match_info["doc"]
        prefix = request.query.get("prefix", "")
        cursor = request.query.get("cursor") or None
        try:
            limit = int(request.query.get("limit", "100"))
        except ValueError:
            return error_response(400, "bad_request", "limit must be an integer")
        if not 1 <= limit <= 10_000:
            return error_response(400, "bad_request", "limit must be 1..10000")
        store = self.node.store
        page = store.scan(doc, prefix, cursor, limit)
        items = [{"key": k, **describe_value(v, counter=k in page.counters)} for k, v in page.items]
        return web.json_response(
            {"doc": doc, "prefix": prefix, "items": items, "cursor": page.cursor}
        )

    async def watch(self, request: web.Request) -> web.StreamResponse:
        doc = request.match_info["doc"]
        store = self.node.store
        if not store.has_document(doc):
            raise E.UnknownDocumentError(f"no document named {doc!r}")
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        stream = store.changes(maxsize=1000)
        self.node.watchers.add(stream)
        try:
            await response.write(b": watching " + doc.encode() + b"\n\n")
            while True:
                try:
                    event = await asyncio.wait_for(stream.get(), self.node.config.api.watch_ping_s)
                except TimeoutError:
                    # aiohttp does not tell a handler its client left; a write
                    # does. Without this an abandoned watch of a quiet document
                    # would hold its stream (and socket) until shutdown.
                    await response.write(b": ping\n\n")
                    continue
                if event is None:
                    break
                if stream.reset_overflow():
                    await response.write(b"event: overflow\ndata: {}\n\n")
                if event.doc != doc:
                    continue
                changes = []
                for key in sorted(event.keys):
                    value, counter = store.lookup(doc, key)
                    changes.append({"key": key, **describe_value(value, counter=counter)})
                payload = {
                    "doc": doc,
                    "origin": event.origin,
                    "time": time.time(),
                    "changes": changes,
                }
                await response.write(f"data: {json.dumps(payload)}\n\n".encode())
        except ConnectionResetError:
            pass  # the watcher went away
        finally:
            stream.close()
            self.node.watchers.discard(stream)
        return response
