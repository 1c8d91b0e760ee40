"""The dashboard: its static page at ``/ui`` and its data at ``/v1/admin/overview``.

The page (HTML, CSS, plain JS from ``edgestate/node/ui/static``, shipped in the
package) is public: it holds no data, only a login form. Every figure it shows
comes from ``GET /v1/admin/overview``, an admin route like any other (the
middleware checks the bearer token, or a cluster certificate under TLS). The
script keeps the token the operator typed in ``sessionStorage`` (gone with the
tab, never in a URL, a cookie or a log) and sends it as ``Authorization:
Bearer`` on each fetch. No cookie means no cross-site request can ride on a
logged-in browser, so the admin API needs no CSRF defence.

The page is served with a Content-Security-Policy allowing only this origin
(no inline script, no external URL: a node may have no internet), and may not
be framed.
"""

from __future__ import annotations

from importlib import resources

from aiohttp import web

from edgestate.errors import BadRequestError
from edgestate.node.api.protocol import Dashboard

# The only files served: a fixed list, so no request path reaches the filesystem.
_ASSETS = {
    "dashboard.js": "text/javascript",
    "dashboard.css": "text/css",
}
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    # Small files, and an upgraded node must not serve yesterday's script.
    "Cache-Control": "no-cache",
}


def _static(name: str) -> bytes:
    return (resources.files("edgestate.node.ui") / "static" / name).read_bytes()


class DashboardRoutes:
    """``/``, ``/ui``, ``/ui/{asset}`` and ``/v1/admin/overview``."""

    def __init__(self, node: Dashboard) -> None:
        self.node = node
        # Read once: the package does not change under a running node.
        self._index = _static("index.html")
        self._assets = {name: _static(name) for name in _ASSETS}

    async def root(self, request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/ui")

    async def index(self, request: web.Request) -> web.StreamResponse:
        return web.Response(
            body=self._index, content_type="text/html", charset="utf-8", headers=_HEADERS
        )

    async def asset(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["asset"]
        body = self._assets.get(name)
        if body is None:
            raise web.HTTPNotFound(reason=f"no dashboard file {name[:64]!r}")
        return web.Response(
            body=body, content_type=_ASSETS[name], charset="utf-8", headers=_HEADERS
        )

    async def overview(self, request: web.Request) -> web.StreamResponse:
        query = request.query
        repeated = sorted({k for k in query if len(query.getall(k)) > 1})
        if repeated:
            raise BadRequestError(f"overview parameter {repeated[0][:32]!r} is given twice")
        response = web.json_response(self.node.overview(dict(query)))
        # Tens of KiB of repetitive JSON every 2 s per open tab: gzip if asked.
        response.enable_compression()
        return response
