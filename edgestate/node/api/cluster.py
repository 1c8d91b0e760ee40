"""Admin routes over the node itself: status, peers, cluster members, modules."""

from __future__ import annotations

import base64
import binascii
import logging
import re
from typing import TYPE_CHECKING, Any

from aiohttp import web

from edgestate.errors import BadRequestError
from edgestate.node.api.body import read_json_object
from edgestate.node.api.protocol import Cluster
from edgestate.node.api.responses import error_response

if TYPE_CHECKING:
    from edgestate.runtime import LoadedModule

log = logging.getLogger("edgestate.node.api")

# Replica ids are CRDT client ids, kept JavaScript-safe (under 2**53) for Yjs
# clients. Bounding them here also keeps an absurd id out of the frontier
# tracker, whose persisted form (msgpack) cannot hold integers past 64 bits.
MAX_REPLICA_ID = 2**53 - 1
_REPLICA_DIGITS = re.compile(r"[0-9]+")


class ClusterRoutes:
    """``/v1/admin/status``, ``peers``, ``members``, ``diagnostics``, ``modules``.

    Modules: list, deploy, rollback, remove.
    """

    def __init__(self, node: Cluster) -> None:
        self.node = node

    async def status(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(self.node.status())

    async def peers(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"peers": self.node.peer_rows()})

    async def modules(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"modules": self.node.module_rows()})

    async def members(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(self.node.members())

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
        if replica == self.node.replica_id:
            return error_response(
                400,
                "bad_request",
                f"replica {replica} is this node's own id; a node cannot forget itself",
            )
        was_member = await self.node.forget_member(replica)
        if was_member:
            log.warning(
                "forgot cluster member %d: garbage collection no longer waits for it, and "
                "it is refused as stale if it comes back",
                replica,
            )
        return web.json_response({"forgotten": replica, "was_member": was_member})

    async def deploy(self, request: web.Request) -> web.StreamResponse:
        body = await read_json_object(request, "the deploy body")
        parts: dict[str, bytes] = {}
        for field in ("wasm", "manifest", "signature"):
            value = body.get(field)
            if not isinstance(value, str):
                return error_response(400, "bad_request", f"field {field!r} (base64) is missing")
            try:
                parts[field] = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                return error_response(400, "bad_request", f"field {field!r} is not valid base64")
        loaded = await self.node.deploy(
            parts["wasm"],
            parts["manifest"],
            parts["signature"],
            allow_downgrade=_flag(request, "allow_downgrade"),
        )
        return web.json_response(_loaded_json(loaded), status=201)

    async def rollback(self, request: web.Request) -> web.StreamResponse:
        body = await read_json_object(request, "the rollback body")
        unknown = set(body) - {"version"}
        if unknown:
            raise BadRequestError(
                f"the rollback body has unknown fields {sorted(unknown)}; it takes only "
                '"version" (a kept version, or null for the one before the active one)'
            )
        version = body.get("version")
        if version is not None and not (isinstance(version, str) and version):
            raise BadRequestError(
                f'"version" must be a version string or null, got {version!r}'[:200]
            )
        loaded = await self.node.rollback_module(request.match_info["name"], version)
        return web.json_response(_loaded_json(loaded))

    async def reload_trust_policy(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(await self.node.reload_trust_policy())

    async def diagnostics(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(await self.node.diagnostics())

    async def remove(self, request: web.Request) -> web.StreamResponse:
        await self.node.remove_module(request.match_info["name"])
        return web.json_response({"removed": request.match_info["name"]})


def _flag(request: web.Request, name: str) -> bool:
    """A boolean query parameter: absent, ``true`` or ``false``; anything else is a 400."""
    raw = request.query.get(name)
    if raw is None or raw == "false":
        return False
    if raw == "true":
        return True
    raise BadRequestError(f"query parameter {name} must be true or false, got {raw!r}"[:200])


def _loaded_json(loaded: LoadedModule) -> dict[str, Any]:
    return {
        "name": loaded.name,
        "version": loaded.version,
        "publisher": loaded.publisher,
        "wasm_sha256": loaded.wasm_sha256,
    }
