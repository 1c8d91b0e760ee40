"""A bounded, seeded fuzz of the HTTP API of a real node subprocess.

Every admin and invocation route gets a few hundred random and near-valid
requests: bodies that are bad JSON, of the wrong types, hold huge numbers, nest
deep or are not UTF-8; odd path segments, query values and headers. Every answer
must be the JSON error shape with a 4xx (or a 2xx where the request was valid),
never a 5xx nor text/plain; the node keeps serving and a key written before is
still there after. Some requests announce a longer body than they send and stop
sending: the route that reads it answers a JSON 400 (the body ended early).

Requests go over raw sockets to 127.0.0.1, one per connection, so that headers
and framing are exactly what the case says. The seed is fixed (override with
EDGESTATE_FUZZ_SEED to explore); a failure names its case number.
"""

from __future__ import annotations

import base64
import json
import os
import random
import shutil
import socket
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import wasmtime

from edgestate.devkit import Publisher, make_publisher
from tests.node.api_check import call
from tests.node.conftest import NodeProcess, start_node

SEED = int(os.environ.get("EDGESTATE_FUZZ_SEED", "20261201"))
CASES = 400
# One request's bound: a node answers these in milliseconds.
REQUEST_TIMEOUT_S = 10.0
WAT = Path(__file__).resolve().parents[1] / "runtime" / "wat"
# Written before the fuzz, in a document no case names: it must survive intact.
KEEP_DOC, KEEP_KEY, KEEP_VALUE = "keep", "precious", b"written before the fuzz"
MODULE = "noop"


@dataclass
class Case:
    method: str
    target: str
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    # A Content-Length that is not the body's: aiohttp's parser answers, not a route.
    framing: bool = False
    content_length: int | None = None


@dataclass
class Answer:
    status: int | None  # None: the connection closed without an answer
    headers: dict[str, str]
    body: bytes


def send(port: int, case: Case, token: str | None) -> Answer:
    headers = {"Host": f"127.0.0.1:{port}", "Connection": "close"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    headers.update(case.headers)
    length = len(case.body) if case.content_length is None else case.content_length
    headers["Content-Length"] = str(length)
    head = f"{case.method} {case.target} HTTP/1.1\r\n" + "".join(
        f"{k}: {v}\r\n" for k, v in headers.items()
    )
    with socket.create_connection(("127.0.0.1", port), timeout=REQUEST_TIMEOUT_S) as sock:
        sock.sendall(head.encode("latin-1") + b"\r\n" + case.body)
        if case.framing:
            sock.shutdown(socket.SHUT_WR)  # a body shorter than announced ends here
        raw = b""
        while chunk := sock.recv(1 << 16):
            raw += chunk
    if not raw:
        return Answer(None, {}, b"")
    head_bytes, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = head_bytes.decode("latin-1").split("\r\n")
    parsed = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return Answer(int(status_line.split()[1]), parsed, body)


# --- generators ----------------------------------------------------------------------


def quote(segment: str) -> str:
    return urllib.parse.quote(segment, safe="", errors="surrogatepass")


def odd_name(rng: random.Random) -> str:
    """A path segment: often valid, often not (never the kept document or the module)."""
    return rng.choice(
        [
            "fuzz",
            "fuzz",
            f"fz{rng.randrange(1000)}",
            "x" * rng.choice([64, 65, 300]),
            "..",
            "a.b-c_d",
            "caf\u00e9",
            "\u0000",
            "sp ace",
            "%ff",
            "\ud800",
            "\U0001f600" * 3,
        ]
    )


def odd_number(rng: random.Random) -> str:
    return rng.choice(
        [
            "1",
            "-1",
            "0",
            "7",
            str(2**63),
            str(-(2**63) - 1),
            "9" * rng.choice([20, 4301, 5000]),
            "1e3",
            "1.5",
            "NaN",
            "",
            "abc",
            " 5",
            "0x10",
            "\u0663",
        ]
    )


def odd_json_value(rng: random.Random, depth: int = 0) -> Any:
    pick = rng.randrange(12 if depth < 3 else 8)
    if pick == 0:
        return None
    if pick == 1:
        return rng.choice([True, False])
    if pick == 2:
        return rng.choice([0, -1, 2**63, -(2**64), 10**40, 1.5, -0.0])
    if pick == 3:
        return rng.choice(["", "set", "incr", "delete", "x" * 1000, "\u00e9", "AAAA", "!!!"])
    if pick in (4, 5, 6, 7):
        return odd_name(rng)
    if pick in (8, 9):
        return [odd_json_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {odd_name(rng): odd_json_value(rng, depth + 1) for _ in range(rng.randrange(4))}


def valid_op(rng: random.Random) -> dict[str, Any]:
    key = f"k{rng.randrange(50)}"
    kind = rng.choice(["set", "delete", "incr"])
    if kind == "set":
        return {"op": "set", "key": key, "base64": base64.b64encode(rng.randbytes(8)).decode()}
    if kind == "incr":
        return {"op": "incr", "key": f"c{rng.randrange(5)}", "delta": rng.randrange(-5, 5)}
    return {"op": "delete", "key": key}


def batch_body(rng: random.Random) -> dict[str, Any]:
    ops: list[Any] = [valid_op(rng) for _ in range(rng.randrange(1, 4))]
    if rng.random() < 0.6:  # near-valid: one op damaged
        i = rng.randrange(len(ops))
        op = dict(ops[i])
        field_name = rng.choice(["op", "key", "base64", "delta", "extra"])
        op[field_name] = odd_json_value(rng)
        ops[i] = op if rng.random() < 0.8 else odd_json_value(rng)
    return {"ops": ops}


DAMAGES = 10


def damage(rng: random.Random, body: bytes, how: int | None = None) -> bytes:
    """Break a JSON body the way hostile or buggy clients do (``how``: which way)."""
    how = rng.randrange(DAMAGES) if how is None else how
    if how == 0:
        return body[: rng.randrange(len(body) + 1)]
    if how == 1:
        i = rng.randrange(len(body))
        return body[:i] + bytes([rng.randrange(256)]) + body[i + 1 :]
    if how == 2:
        i = rng.randrange(len(body) + 1)
        return body[:i] + rng.choice([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x00"]) + body[i:]
    if how == 3:
        n = rng.choice([33, 1000, 100_000, 100_000])
        return b'{"ops": ' + b"[" * n + b"]" * rng.choice([0, n]) + b"}"
    if how == 4:
        return rng.choice([b"NaN", b"Infinity", b"-Infinity", b"1e999", b"9" * 5000])
    if how == 5:
        return rng.choice([b"[]", b'"ops"', b"null", b"true", b"12", b"", b"   "])
    if how == 6:
        return body.replace(b"}", b",}", 1)
    if how == 7:
        return body + b"garbage"
    if how == 8:
        return json.dumps(odd_json_value(rng)).encode()
    return rng.randbytes(rng.randrange(1, 64))


class Generator:
    """The seeded cases: one route per case, the route's own kind of mischief."""

    def __init__(self, rng: random.Random, bundle: dict[str, str]) -> None:
        self.rng = rng
        self.bundle = bundle
        self.routes: list[Callable[[], Case]] = [
            self.invoke,
            self.invoke,
            self.status,
            self.member_forget,
            self.deploy,
            self.deploy,
            self.module_remove,
            self.key_get,
            self.key_put,
            self.key_delete,
            self.incr,
            self.batch,
            self.batch,
            self.batch,
            self.scan,
            self.watch_unknown,
        ]

    def classics(self) -> list[Case]:
        """Every kind of damage to both JSON routes once, whatever the seed."""
        rng = self.rng
        cases = []
        for how in range(DAMAGES):
            batch = json.dumps(batch_body(rng)).encode()
            cases.append(Case("POST", "/v1/admin/docs/fuzz/batch", damage(rng, batch, how)))
            deploy = json.dumps(self.bundle).encode()
            cases.append(Case("POST", "/v1/admin/modules", damage(rng, deploy, how)))
        cases.append(Case("POST", "/v1/admin/docs/fuzz/batch", b"[" * 100_000))
        cases.append(Case("POST", "/v1/admin/modules", b"{" * 100_000))
        return cases

    def case(self) -> Case:
        case = self.rng.choice(self.routes)()
        rng = self.rng
        if rng.random() < 0.3:
            case.headers["Content-Type"] = rng.choice(
                [
                    "application/json",
                    "text/plain",
                    "application/json; charset=latin-1",
                    "x/unknown",
                    "",
                ]
            )
        if rng.random() < 0.1:
            case.headers["X-Fuzz"] = "y" * rng.choice([10, 4000])
        if rng.random() < 0.05 and case.body:
            case.framing = True  # announce more than is sent, then stop sending
            case.content_length = len(case.body) + rng.randrange(1, 100)
        return case

    def invoke(self) -> Case:
        rng = self.rng
        name = MODULE if rng.random() < 0.6 else odd_name(rng)
        size = rng.choice([0, 1, 100, 1 << 20, (1 << 20) + 1])
        return Case("POST", f"/v1/invoke/{quote(name)}", rng.randbytes(size))

    def status(self) -> Case:
        path = self.rng.choice(
            ["status", "peers", "members", "modules", "docs", "nope", "docs/fuzz/nope"]
        )
        return Case(self.rng.choice(["GET", "GET", "POST", "PATCH"]), f"/v1/admin/{path}")

    def member_forget(self) -> Case:
        return Case("DELETE", f"/v1/admin/members/{quote(odd_number(self.rng))}")

    def deploy(self) -> Case:
        rng = self.rng
        body: Any = dict(self.bundle)
        if rng.random() < 0.7:
            fieldname = rng.choice(["wasm", "manifest", "signature", "extra"])
            body[fieldname] = rng.choice(
                [odd_json_value(rng), base64.b64encode(rng.randbytes(16)).decode(), "!!"]
            )
        raw = json.dumps(body).encode()
        if rng.random() < 0.4:
            raw = damage(rng, raw)
        return Case("POST", "/v1/admin/modules", raw)

    def module_remove(self) -> Case:
        return Case("DELETE", f"/v1/admin/modules/{quote(odd_name(self.rng))}")

    def _key_path(self) -> str:
        rng = self.rng
        key = rng.choice([f"k{rng.randrange(50)}", odd_name(rng), "a/b", "k" * 2000])
        return f"/v1/admin/docs/{quote(odd_name(rng))}/keys/{quote(key)}"

    def key_get(self) -> Case:
        return Case("GET", self._key_path())

    def key_put(self) -> Case:
        rng = self.rng
        size = rng.choice([0, 10, 1 << 20, (1 << 20) + 1])
        query = "?create=true" if rng.random() < 0.5 else ""
        return Case("PUT", self._key_path() + query, rng.randbytes(size))

    def key_delete(self) -> Case:
        return Case("DELETE", self._key_path())

    def incr(self) -> Case:
        rng = self.rng
        query = f"?delta={quote(odd_number(rng))}" + ("&create=true" if rng.random() < 0.5 else "")
        return Case("POST", self._key_path() + "/incr" + query)

    def batch(self) -> Case:
        rng = self.rng
        raw = json.dumps(batch_body(rng)).encode()
        if rng.random() < 0.5:
            raw = damage(rng, raw)
        doc = "fuzz" if rng.random() < 0.7 else odd_name(rng)
        return Case("POST", f"/v1/admin/docs/{quote(doc)}/batch?create=true", raw)

    def scan(self) -> Case:
        rng = self.rng
        query = urllib.parse.urlencode(
            {
                "limit": odd_number(rng),
                "prefix": rng.choice(["", "k", "\u00e9", "%"]),
                "cursor": rng.choice(["", "abc", "AAAA", "\u0000"]),
            }
        )
        return Case("GET", f"/v1/admin/docs/{quote(odd_name(rng))}/scan?{query}")

    def watch_unknown(self) -> Case:
        # Only documents that do not exist: a watch of one that does streams on.
        name = self.rng.choice(["nosuchdoc", "x" * 65, "\u00e9", "no/such"])
        return Case("GET", f"/v1/admin/docs/{quote(name)}/watch")


# --- the test --------------------------------------------------------------------------


def wat_bundle(publisher: Publisher) -> dict[str, str]:
    wasm = wasmtime.wat2wasm((WAT / "noop.wat").read_text())
    manifest = json.dumps(
        {
            "name": MODULE,
            "version": "1.0.0",
            "documents": {"read": [], "write": ["fuzz"]},
            "limits": {
                "fuel": 1_000_000,
                "wall_time_ms": 200,
                "memory_pages": 4,
                "max_output_bytes": 1024,
            },
        }
    ).encode()
    return {
        "wasm": base64.b64encode(wasm).decode(),
        "manifest": base64.b64encode(manifest).decode(),
        "signature": base64.b64encode(publisher.sign(wasm, manifest)).decode(),
    }


@pytest.fixture(scope="module")
def fuzz_node(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[NodeProcess, dict[str, str]]]:
    root = tmp_path_factory.mktemp("fuzz")
    publisher = make_publisher(root / "publisher")
    data = root / "data"
    data.mkdir()
    shutil.copy(publisher.policy_path, data / "trust-policy.json")
    n = start_node(data, "--no-mdns")
    yield n, wat_bundle(publisher)
    assert n.stop() == 0, n.log()


def check_error_shape(answer: Answer, where: str) -> None:
    assert answer.headers.get("content-type", "").startswith("application/json"), where
    body = json.loads(answer.body)
    assert set(body) == {"error"}, where
    error = body["error"]
    assert set(error) == {"code", "message"}, where
    assert isinstance(error["code"], str) and error["code"], where
    assert isinstance(error["message"], str), where


def test_fuzzed_requests_get_json_errors_and_lose_nothing(
    fuzz_node: tuple[NodeProcess, dict[str, str]],
) -> None:
    node, bundle = fuzz_node
    port = int(urllib.parse.urlsplit(node.api).port or 0)
    deployed = call(
        node.api, "POST", "/v1/admin/modules", json.dumps(bundle).encode(), token=node.token
    )
    assert deployed.status == 201, deployed.body
    kept = call(
        node.api,
        "PUT",
        f"/v1/admin/docs/{KEEP_DOC}/keys/{KEEP_KEY}",
        KEEP_VALUE,
        token=node.token,
        query={"create": "true"},
        content_type="application/octet-stream",
    )
    assert kept.status == 200, kept.body

    rng = random.Random(SEED)
    gen = Generator(rng, bundle)
    statuses: dict[int | None, int] = {}
    classics = gen.classics()
    for number in range(CASES):
        case = classics[number] if number < len(classics) else gen.case()
        # Now and then no token, or a wrong one: the refusal is JSON too.
        token: str | None = node.token
        if case.target.startswith("/v1/admin/") and rng.random() < 0.05:
            token = rng.choice([None, "wrong-token-0123456789"])
        answer = send(port, case, token)
        where = f"case {number} (seed {SEED}): {case.method} {case.target[:120]} -> {answer.status}"
        statuses[answer.status] = statuses.get(answer.status, 0) + 1
        if case.framing:
            # The route answers what it got (a 400 for a body cut short), or a
            # route that reads no body answers at once: never a 5xx.
            assert answer.status is None or answer.status < 500, where
            if answer.status is not None and answer.status >= 400:
                check_error_shape(answer, where)
        else:
            assert answer.status is not None, where
            assert answer.status < 500, where + " " + answer.body[:300].decode(errors="replace")
            if answer.status >= 400:
                check_error_shape(answer, where)
        if number % 50 == 0:
            assert call(node.api, "GET", "/healthz").status == 200, where

    # The node still serves, the module still runs, and nothing was lost.
    assert call(node.api, "GET", "/healthz").status == 200
    ran = call(
        node.api,
        "POST",
        f"/v1/invoke/{MODULE}",
        b"x",
        content_type="application/octet-stream",
        validate=False,  # noop's output is empty, which the spec's body schema does not cover
    )
    assert ran.status == 200, ran.body
    got = call(node.api, "GET", f"/v1/admin/docs/{KEEP_DOC}/keys/{KEEP_KEY}", token=node.token)
    assert got.status == 200 and base64.b64decode(got.json()["base64"]) == KEEP_VALUE
    assert "failed unexpectedly" not in node.log()
    assert "Traceback" not in node.log()
    # The fuzz reached the routes: valid requests succeeded, invalid ones were refused.
    assert sum(n for s, n in statuses.items() if s is not None and s < 300) > CASES // 10, statuses
    assert sum(n for s, n in statuses.items() if s is not None and s >= 400) > CASES // 4, statuses
    print(f"fuzz seed {SEED}: answers by status {dict(sorted(statuses.items(), key=str))}")
