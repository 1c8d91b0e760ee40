"""TLS on the API: the server context, and whether a request's client proved a
cluster certificate, also when an invocation worker terminated its TLS.

With ``api.tls`` each worker builds its own context from the same certificate
and key paths (never key bytes over a pipe) and serves HTTPS itself; what it
relays reaches the node on a private unix socket, without TLS. So the worker
says, in :data:`CERT_HEADER`, that the handshake verified a client certificate,
and the node believes that header only on its unix socket (a worker's), never
from a client: workers strip it from what clients send.
"""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from edgestate.sync import TLSFiles

# Set by a worker on a relayed request whose client presented a certificate the
# handshake verified against the cluster CA (and its CRL).
CERT_HEADER = "X-Edgestate-Client-Cert"
VERIFIED = "verified"


def api_tls_context(files: TLSFiles) -> ssl.SSLContext:
    """The API's TLS server context with the cluster's certificate files."""
    # Imported here: the API routes must not pull in the sync daemon
    # (tests/node/test_layering.py), and only a TLS listener needs it.
    from edgestate.sync.tls import server_context

    ctx = server_context(files)
    # Token users have no certificate; a certificate, if presented, must be
    # valid for the cluster (the handshake fails otherwise).
    ctx.verify_mode = ssl.CERT_OPTIONAL
    return ctx


def has_peer_certificate(request: web.Request) -> bool:
    """Whether this connection's TLS handshake verified a client certificate."""
    transport = request.transport
    return transport is not None and bool(transport.get_extra_info("peercert"))


def client_certified(request: web.Request) -> bool:
    """Whether the client proved a cluster certificate: on this connection, or (a
    request relayed by a worker, on the node's unix socket) on the worker's."""
    if has_peer_certificate(request):
        return True
    transport = request.transport
    relayed = transport is not None and isinstance(transport.get_extra_info("sockname"), str)
    return relayed and request.headers.get(CERT_HEADER) == VERIFIED


__all__ = [
    "CERT_HEADER",
    "VERIFIED",
    "api_tls_context",
    "client_certified",
    "has_peer_certificate",
]
