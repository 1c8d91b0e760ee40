"""Admin routes over documents: keys, atomic batches, scans and watch streams.

Every write route refuses the node's own ``_`` documents (``system_document``,
403) before touching the body: they replicate cluster-wide and only the node's
own paths (deploy, membership) may write them. Reads of them are allowed.
"""

from __future__ import annotations

import asyncio
import binascii
import json
import time

from aiohttp import web

from edgestate import errors as E
from edgestate.errors import BadRequestError
from edgestate.node.api.body import read_json_object
from edgestate.node.api.observe import CLIENT_GONE
from edgestate.node.api.protocol import Documents
from edgestate.node.api.responses import error_response
from edgestate.store import Delete, Incr, Set, check_user_writable, describe_value, op_from_json


class DocumentRoutes:
    """``/v1/admin/docs`` and ``/v1/admin/docs/{doc}/...``."""

    def __init__(self, node: Documents) -> None:
        self.node = node

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
        check_user_writable(doc)
        body = await request.read()
        if request.query.get("create") == "true":
            await self.node.store.acreate_document(doc)
        await self.node.store.abatch([Set(doc, key, body)])
        return web.json_response({"doc": doc, "key": key, "ok": True, "bytes": len(body)})

    async def delete_key(self, request: web.Request) -> web.StreamResponse:
        doc, key = request.match_info["doc"], request.match_info["key"]
        check_user_writable(doc)
        await self.node.store.abatch([Delete(doc, key)])
        return web.json_response({"doc": doc, "key": key, "ok": True})

    async def incr_key(self, request: web.Request) -> web.StreamResponse:
        doc, key = request.match_info["doc"], request.match_info["key"]
        check_user_writable(doc)
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
        check_user_writable(doc)
        body = await read_json_object(request, "the batch body")
        raw_ops = body.get("ops")
        if not isinstance(raw_ops, list):
            raise BadRequestError('the batch body needs "ops", a list of operations')
        ops = []
        for i, raw_op in enumerate(raw_ops):
            try:
                ops.append(op_from_json(doc, raw_op))
            except KeyError as exc:
                raise BadRequestError(f"batch op {i} lacks the field {exc}") from exc
            except (TypeError, ValueError, binascii.Error) as exc:
                raise BadRequestError(f"batch op {i} is not valid: {exc}") from exc
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
        try:
            await response.prepare(request)
        except ConnectionResetError:
            # The watcher left before its stream began (aiohttp runs a handler
            # whose client is gone): nothing to answer. Unguarded, the API's
            # middleware took it for a truncated body and counted a 400
            # bad_request. Counted as gone instead; aiohttp finds the connection
            # closed when it tries to send this and lets it go quietly.
            return web.StreamResponse(status=CLIENT_GONE)
        stream = self.node.open_watch(maxsize=1000)
        try:
            await response.write(b": watching " + doc.encode() + b"\n\n")
            while True:
                try:
                    event = await asyncio.wait_for(stream.get(), self.node.api_config.watch_ping_s)
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
            self.node.close_watch(stream)
        return response
