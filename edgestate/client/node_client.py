"""A small synchronous client of a running node's HTTP API, for the CLI and scripts."""

from __future__ import annotations

import base64
import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from edgestate.errors import NodeAPIError, NodeUnreachableError
from edgestate.store import WriteOp, describe_value, op_to_json


def tls_context(ca_cert: str | None, cert: str | None, key: str | None) -> ssl.SSLContext:
    """Client TLS for a node's HTTPS API: its cluster CA, maybe our certificate."""
    ctx = ssl.create_default_context(cafile=ca_cert)
    # The cluster CA names nodes by fingerprint, not host name.
    ctx.check_hostname = False if ca_cert else ctx.check_hostname
    if cert:
        ctx.load_cert_chain(cert, key)
    return ctx


@dataclass(frozen=True, slots=True)
class NodeClient:
    """Talks to ``url`` with the admin ``token``."""

    url: str
    token: str | None = None
    timeout: float = 30.0
    # For an https node: trust its cluster CA, and optionally present a client
    # certificate of the cluster (admin without a token).
    ssl_context: ssl.SSLContext | None = None

    def _request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        *,
        content_type: str = "application/json",
        query: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> Any:
        url = self.url.rstrip("/") + path
        if query:
            url += "?" + urllib.parse.urlencode(query)
        req = urllib.request.Request(url, data=body, method=method)
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        if body is not None:
            req.add_header("Content-Type", content_type)
        try:
            return urllib.request.urlopen(
                req, timeout=timeout or self.timeout, context=self.ssl_context
            )
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                err = json.loads(raw)["error"]
                code, message = str(err["code"]), str(err["message"])
            except (ValueError, KeyError, TypeError):
                code, message = "http_error", raw.decode(errors="replace")[:200] or exc.reason
            raise NodeAPIError(exc.code, code, message) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise NodeUnreachableError(f"cannot reach a node at {self.url}: {reason}") from None

    def _json(self, method: str, path: str, body: Any = None, **kw: Any) -> Any:
        data = None if body is None else json.dumps(body).encode()
        with self._request(method, path, data, **kw) as resp:
            return json.loads(resp.read())

    @staticmethod
    def _q(part: str) -> str:
        return urllib.parse.quote(part, safe="")

    def status(self) -> dict[str, Any]:
        """``GET /v1/admin/status``."""
        return dict(self._json("GET", "/v1/admin/status"))

    def peers(self) -> list[dict[str, Any]]:
        """``GET /v1/admin/peers``."""
        return list(self._json("GET", "/v1/admin/peers")["peers"])

    def members(self) -> dict[str, Any]:
        """``GET /v1/admin/members``: this node's id, the members it waits for, forgotten ids."""
        return dict(self._json("GET", "/v1/admin/members"))

    def forget_member(self, replica: int) -> dict[str, Any]:
        """``DELETE /v1/admin/members/{replica}``: stop waiting for a member gone for good."""
        return dict(self._json("DELETE", f"/v1/admin/members/{int(replica)}"))

    def diagnostics(self) -> dict[str, Any]:
        """``GET /v1/admin/diagnostics``: the doctor's facts and findings of the node."""
        return dict(self._json("GET", "/v1/admin/diagnostics"))

    def modules(self) -> list[dict[str, Any]]:
        """``GET /v1/admin/modules``."""
        return list(self._json("GET", "/v1/admin/modules")["modules"])

    def deploy(
        self, wasm: bytes, manifest: bytes, signature: bytes, *, allow_downgrade: bool = False
    ) -> dict[str, Any]:
        """``POST /v1/admin/modules`` with a signed bundle (a downgrade only if allowed)."""
        body = {
            k: base64.b64encode(v).decode()
            for k, v in (("wasm", wasm), ("manifest", manifest), ("signature", signature))
        }
        query = {"allow_downgrade": "true"} if allow_downgrade else None
        return dict(self._json("POST", "/v1/admin/modules", body, query=query))

    def rollback(self, name: str, version: str | None = None) -> dict[str, Any]:
        """``POST /v1/admin/modules/{name}/rollback``: re-activate a kept version
        (None: the one deployed before the active one)."""
        path = f"/v1/admin/modules/{self._q(name)}/rollback"
        return dict(self._json("POST", path, {"version": version}))

    def reload_trust_policy(self) -> dict[str, Any]:
        """``POST /v1/admin/trust-policy/reload``: reread the policy, recheck modules."""
        return dict(self._json("POST", "/v1/admin/trust-policy/reload"))

    def remove(self, name: str) -> None:
        """``DELETE /v1/admin/modules/{name}``."""
        self._json("DELETE", f"/v1/admin/modules/{self._q(name)}")

    def documents(self) -> list[dict[str, Any]]:
        """``GET /v1/admin/docs``."""
        return list(self._json("GET", "/v1/admin/docs")["documents"])

    def get(self, doc: str, key: str) -> dict[str, Any]:
        """``GET .../keys/{key}``; an absent key is ``found: false``, not an error."""
        try:
            return dict(self._json("GET", f"/v1/admin/docs/{self._q(doc)}/keys/{self._q(key)}"))
        except NodeAPIError as exc:
            if exc.code == "key_not_found":
                return {"doc": doc, "key": key, **describe_value(None, counter=False)}
            raise

    def put(self, doc: str, key: str, value: bytes, *, create: bool = False) -> None:
        """``PUT .../keys/{key}`` with the raw value."""
        with self._request(
            "PUT",
            f"/v1/admin/docs/{self._q(doc)}/keys/{self._q(key)}",
            value,
            content_type="application/octet-stream",
            query={"create": "true"} if create else None,
        ):
            pass

    def delete(self, doc: str, key: str) -> None:
        """``DELETE .../keys/{key}``."""
        self._json("DELETE", f"/v1/admin/docs/{self._q(doc)}/keys/{self._q(key)}")

    def incr(self, doc: str, key: str, delta: int, *, create: bool = False) -> int:
        """``POST .../keys/{key}/incr``; the counter's new total."""
        query = {"delta": str(delta)}
        if create:
            query["create"] = "true"
        with self._request(
            "POST", f"/v1/admin/docs/{self._q(doc)}/keys/{self._q(key)}/incr", b"", query=query
        ) as resp:
            out = json.loads(resp.read())
        return int(out["counter"])

    def batch(self, doc: str, ops: list[WriteOp], *, create: bool = False) -> list[Any]:
        """``POST .../batch``: the ops, all for ``doc``, atomically; one result per op."""
        for op in ops:
            # The endpoint writes every op into the document of its URL.
            if op.doc != doc:
                raise ValueError(f"op for document {op.doc!r} in a batch for {doc!r}")
        query = {"create": "true"} if create else None
        body = {"ops": [op_to_json(op) for op in ops]}
        out = self._json("POST", f"/v1/admin/docs/{self._q(doc)}/batch", body, query=query)
        return list(out["results"])

    def scan(
        self, doc: str, prefix: str = "", cursor: str | None = None, limit: int = 100
    ) -> dict[str, Any]:
        """``GET .../scan``."""
        query = {"prefix": prefix, "limit": str(limit)}
        if cursor:
            query["cursor"] = cursor
        return dict(self._json("GET", f"/v1/admin/docs/{self._q(doc)}/scan", query=query))

    def invoke(self, module: str, body: bytes) -> tuple[bytes, dict[str, str]]:
        """``POST /v1/invoke/{module}``: (output, response headers)."""
        with self._request(
            "POST", f"/v1/invoke/{self._q(module)}", body, content_type="application/octet-stream"
        ) as resp:
            return resp.read(), dict(resp.headers)

    def watch(self, doc: str) -> Iterator[dict[str, Any]]:
        """Follow ``.../watch`` (server-sent events) until the node closes it."""
        resp = self._request("GET", f"/v1/admin/docs/{self._q(doc)}/watch", timeout=3600)
        with resp:
            for raw in resp:
                line = raw.decode().rstrip("\n")
                if line.startswith("data: "):
                    yield dict(json.loads(line[6:]))

    def create_token(
        self,
        docs: list[str],
        *,
        read_only: bool = False,
        create: bool = False,
        expires_in_s: float | None = None,
        label: str | None = None,
    ) -> dict[str, Any]:
        """``POST /v1/admin/tokens``: a new client token (its ``token`` is shown once)."""
        body = {
            "docs": docs,
            "read_only": read_only,
            "create": create,
            "expires_in_s": expires_in_s,
            "label": label,
        }
        return dict(self._json("POST", "/v1/admin/tokens", body))

    def tokens(self) -> list[dict[str, Any]]:
        """``GET /v1/admin/tokens``: every client token's grants and state."""
        return list(self._json("GET", "/v1/admin/tokens")["tokens"])

    def revoke_token(self, token_id: str) -> dict[str, Any]:
        """``DELETE /v1/admin/tokens/{id}``: revoke it and close its connections."""
        return dict(self._json("DELETE", f"/v1/admin/tokens/{self._q(token_id)}"))
