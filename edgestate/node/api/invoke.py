"""Routes of the data plane: invoking a module, health and metrics."""

from __future__ import annotations

import time
from collections.abc import Callable

from aiohttp import web

from edgestate.node.api.protocol import Invocations
from edgestate.node.api.responses import error_response


class InvocationRoutes:
    """``POST /v1/invoke/{module}``, ``/healthz``, ``/readyz``, ``/metrics``."""

    def __init__(self, node: Invocations) -> None:
        self.node = node

    async def invoke(self, request: web.Request) -> web.StreamResponse:
        node = self.node
        name = request.match_info["module"]
        if node.draining:
            return error_response(503, "shutting_down", "the node is shutting down")
        if (
            request.content_length is not None
            and request.content_length > node.api_config.max_body_bytes
        ):
            node.count_http_error("body_too_large")
            return error_response(
                413,
                "body_too_large",
                f"input of {request.content_length} bytes is over the limit of "
                f"{node.api_config.max_body_bytes}",
            )
        body = await request.read()
        # The request has arrived: its wall-time budget counts from here (the wait
        # for a slot and a thread is inside it; a slow upload is not the module's).
        arrived = time.monotonic_ns()
        if len(body) > node.api_config.max_body_bytes:
            return error_response(413, "body_too_large", "input over the limit")
        result = await node.invoke(name, body, gone=_client_gone(request), arrived_ns=arrived)
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

    async def healthz(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"ok": True})

    async def readyz(self, request: web.Request) -> web.StreamResponse:
        if not self.node.ready:
            return error_response(503, "not_ready", "the node is starting or shutting down")
        return web.json_response({"ok": True})

    async def metrics(self, request: web.Request) -> web.StreamResponse:
        return web.Response(
            body=self.node.render_metrics(),
            headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"},
        )

    # --- admin --------------------------------------------------------------------


def _client_gone(request: web.Request) -> Callable[[], bool]:
    """Whether ``request``'s client has closed its connection (aiohttp drops the
    transport then; handlers are not cancelled, so the admission queue asks)."""

    def gone() -> bool:
        transport = request.transport
        return transport is None or transport.is_closing()

    return gone
