"""A seeded generator of sync frames for fuzzing a node's sync endpoint.

Shared by ``tests/sync/test_frame_fuzz.py`` (a bounded run in the suite) and
``scripts/fuzz_sync.py`` (a longer campaign against a node process). Each
``Case`` is one WebSocket message plus what the node must do with it: accept it
(the connection stays usable) or close that connection with one of the protocol
close codes in ``expect``. Expectations follow the protocol as
``schemas/sync-protocol.schema.json`` states it, not the decoder's code, so a
decoder that drifts from the schema fails the fuzz.

The generator needs limits small enough that oversized frames are cheap to build:
see ``FuzzLimits``; the node under test must run with the same numbers.
"""

from __future__ import annotations

import random
import string
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import msgpack
import pycrdt

from edgestate.sync.config import Limits
from edgestate.sync.websocket import transport_limit

# The protocol's close codes (RFC 6455 numbering, as edgestate.sync uses them).
PROTOCOL_ERROR = 1002
POLICY_VIOLATION = 1008
MESSAGE_TOO_BIG = 1009
# What the node must close with: 1002 for a frame of the wrong shape or content,
# 1009 for one over a size limit, 1008 for a well-formed hello its policy refuses
# (a foreign cluster, no common version).
MALFORMED = frozenset({PROTOCOL_ERROR})
TOO_BIG = frozenset({MESSAGE_TOO_BIG})
REFUSED = frozenset({POLICY_VIOLATION})

# Phases of a connection: before our hello, or after a completed hello exchange.
PRE, POST = "pre-hello", "post-hello"

# Documents the valid frames write to: a small pool, so the node under test keeps
# few documents and a state-vector probe stays cheap however many cases run.
DOC_POOL = tuple(f"fuzz-{i}" for i in range(6))
# 2**53: the protocol's integers (replica ids, clocks) stay below it (JSON-safe).
INT_LIMIT = 1 << 53


@dataclass(frozen=True, slots=True)
class FuzzLimits:
    """The limits the node under test runs with (its ``sync.limits``)."""

    max_frame_bytes: int = 16 << 10
    max_diff_frame_bytes: int = 256 << 10
    max_documents_per_frame: int = 64

    @property
    def transport_bytes(self) -> int:
        """Past this the transport itself refuses the message (edgestate.sync.websocket)."""
        return transport_limit(
            Limits(
                max_frame_bytes=self.max_frame_bytes,
                max_diff_frame_bytes=self.max_diff_frame_bytes,
                max_documents_per_frame=self.max_documents_per_frame,
            )
        )


@dataclass(frozen=True, slots=True)
class Case:
    """One message to send in ``phase`` and what must follow it.

    ``expect`` None: the node accepts it and the connection stays usable; else the
    node closes the connection with one of these codes. ``text`` sends a text
    message (the protocol is binary). ``answers`` counts the ``synced`` frames the
    node sends back for it (one per state-vector frame).
    """

    category: str
    phase: str
    data: bytes
    expect: frozenset[int] | None
    text: bool = False
    answers: int = 0


def pack(body: object) -> bytes:
    """msgpack with bin and str kept apart, as the protocol encodes."""
    out: bytes = msgpack.packb(body, use_bin_type=True)
    return out


def hello_body(node: str, cluster: str, versions: list[int] | None = None) -> dict[str, Any]:
    """A valid hello (versions 1-3 unless given)."""
    return {"t": "hello", "versions": versions or [1, 2, 3], "node": node, "cluster": cluster}


class FrameFuzzer:
    """Cases from one seeded ``random.Random``: the same seed, the same cases."""

    def __init__(self, rng: random.Random, limits: FuzzLimits, cluster: str = "dev") -> None:
        self.rng = rng
        self.limits = limits
        self.cluster = cluster
        self._docs: dict[str, pycrdt.Doc[Any]] = {}
        self._ids = 0
        # category -> generator of one case; weights pick among them.
        self._post: list[tuple[str, float, Callable[[], Case]]] = [
            ("valid", 4.0, self.valid),
            ("wrong-type", 2.0, self.wrong_type),
            ("missing-field", 1.0, self.missing_field),
            ("extra-field", 1.0, self.extra_field),
            ("bad-t", 1.0, self.bad_t),
            ("out-of-range", 2.0, self.out_of_range),
            ("bad-doc-name", 1.0, self.bad_doc_name),
            ("truncated-inside", 1.0, self.truncated_inside),
            ("truncated-msgpack", 1.0, self.truncated_msgpack),
            ("huge-count", 1.0, self.huge_count),
            ("oversized", 1.0, self.oversized),
            ("deep-nesting", 0.5, self.deep_nesting),
            ("garbage", 1.0, self.garbage),
            ("second-hello", 0.5, self.second_hello),
            ("text-message", 0.3, self.text_message),
        ]
        self._pre: list[tuple[str, float, Callable[[], Case]]] = [
            ("valid-hello", 3.0, self.valid_hello),
            ("hello-mutated", 3.0, self.hello_mutated),
            ("hello-refused", 1.0, self.hello_refused),
            ("before-hello", 2.0, self.before_hello),
            ("oversized", 0.5, self.oversized),
            ("deep-nesting", 0.3, self.deep_nesting),
            ("garbage", 0.5, self.garbage),
            ("truncated-msgpack", 0.5, self.truncated_msgpack),
            ("text-message", 0.2, self.text_message),
        ]
        self.phase = PRE
        # The protocol version the current connection negotiated.
        self.version = 3

    # --- drawing cases -----------------------------------------------------------

    def cases(self) -> Iterator[Case]:
        """An endless stream; each case fits the phase the previous ones left."""
        while True:
            table = self._pre if self.phase == PRE else self._post
            _, _, make = self.rng.choices(table, weights=[w for _, w, _ in table])[0]
            case = make()
            yield case
            # A closed connection starts over before hello; an accepted hello
            # moves on; after hello the connection goes on until something fails.
            self.phase = PRE if case.expect is not None else POST

    def node_id(self) -> str:
        """A fresh node id: a duplicate one would be declined, not fuzzed."""
        self._ids += 1
        return f"fuzz-peer-{self._ids}-{self.rng.randrange(1 << 30):x}"

    # --- valid material ----------------------------------------------------------

    def update(self, doc: str) -> bytes:
        """A real Yjs v1 update of ``doc`` writing one key (a fresh client each time)."""
        ydoc: pycrdt.Doc[Any] = pycrdt.Doc(client_id=self.rng.randrange(1, 1 << 32))
        root = ydoc.get("root", type=pycrdt.Map)
        root[f"k{self.rng.randrange(20)}"] = self.rng.randbytes(self.rng.randrange(1, 64))
        return bytes(ydoc.get_update())

    def state_vector(self) -> bytes:
        """A real state vector (of a scratch document with a few clients)."""
        ydoc: pycrdt.Doc[Any] = pycrdt.Doc()
        for _ in range(self.rng.randrange(0, 3)):
            ydoc.apply_update(self.update("x"))
        return bytes(ydoc.get_state())

    def valid_body(self, kind: str | None = None) -> dict[str, Any]:
        """A valid post-hello frame body of ``kind`` (random if None)."""
        rng = self.rng
        kinds = ["peers", "svs", "diff", "push", "synced"]
        if self.version >= 2:  # reports and collected frames came with version 2
            kinds += ["reports", "collected"]
        kind = kind or rng.choice(kinds)
        doc = rng.choice(DOC_POOL)
        if kind == "peers":
            return {"t": "peers", "nodes": [self.node_id() for _ in range(rng.randrange(4))]}
        if kind == "svs":
            docs = {d: self.state_vector() for d in rng.sample(DOC_POOL, rng.randrange(3))}
            return {"t": "svs", "docs": docs, "reply": rng.random() < 0.5}
        if kind == "diff":
            return {"t": "diff", "doc": doc, "update": self.update(doc)}
        if kind == "push":
            n = rng.randrange(1, 4)
            return {
                "t": "push",
                "updates": [[d, self.update(d)] for d in rng.choices(DOC_POOL, k=n)],
            }
        if kind == "synced":
            return {"t": "synced"}
        if kind == "reports":
            member = rng.randrange(1, 1 << 40)
            sv = [member, rng.randrange(1, 1000)]
            return {"t": "reports", "members": [[member, {doc: sv}]], "forgotten": []}
        return {"t": "collected", "doc": doc, "ranges": [], "rehung": [], "floor": []}

    def valid(self) -> Case:
        body = self.valid_body()
        return Case(f"valid-{body['t']}", POST, pack(body), None, answers=int(body["t"] == "svs"))

    def valid_hello(self) -> Case:
        versions = self.rng.choice(([1, 2, 3], [3], [2, 3], [1], [3, 9, 40]))
        self.version = max(set(versions) & {1, 2, 3})
        return Case(
            "valid-hello", PRE, pack(hello_body(self.node_id(), self.cluster, versions)), None
        )

    # --- near-valid mutations ------------------------------------------------------

    def _body(self) -> dict[str, Any]:
        return hello_body(self.node_id(), self.cluster) if self.phase == PRE else self.valid_body()

    def _named(self, name: str, body: dict[str, Any]) -> str:
        return f"{name}-{body.get('t', '?')}" if self.phase == POST else f"{name}-hello"

    def _other_type(self, value: object) -> object:
        """A value of another msgpack type than ``value``'s."""
        choices: list[object] = [
            None,
            True,
            7,
            -3,
            1.5,
            "text",
            b"bytes",
            [1, "x"],
            {"k": 1},
            msgpack.ExtType(5, b"x"),
        ]
        return self.rng.choice([c for c in choices if type(c) is not type(value)])

    def wrong_type(self) -> Case:
        body = self._body()
        fields = [k for k in body if k != "t"]
        if not fields:  # synced has no fields: make it carry one
            body["extra"] = 1
        else:
            key = self.rng.choice(fields)
            body[key] = self._other_type(body[key])
        return Case(self._named("wrong-type", body), self.phase, pack(body), MALFORMED)

    def missing_field(self) -> Case:
        body = self._body()
        fields = [k for k in body if k != "t"] or ["t"]
        del body[self.rng.choice(fields)]
        return Case(self._named("missing-field", body), self.phase, pack(body), MALFORMED)

    def extra_field(self) -> Case:
        body = self._body()
        body[self.rng.choice(("x", "extra", "T", "node2", "\u00e9"))] = self._other_type(None)
        return Case(self._named("extra-field", body), self.phase, pack(body), MALFORMED)

    def bad_t(self) -> Case:
        body = self._body()
        body["t"] = self.rng.choice(("", "HELLO", "pushh", "diff_partx", b"push", 3, None, ["svs"]))
        return Case("bad-t", self.phase, pack(body), MALFORMED)

    def out_of_range(self) -> Case:
        rng = self.rng
        big = rng.choice((-1, INT_LIMIT, (1 << 64) - 1, -(1 << 63)))
        if self.phase == PRE:
            body = hello_body(self.node_id(), self.cluster)
            choice = rng.randrange(4)
            if choice == 0:
                body["versions"] = [rng.choice((0, -1))]
            elif choice == 1:
                body["versions"] = list(range(1, 18))  # over 16 versions
            elif choice == 2:
                body["versions"] = []
            else:
                body[rng.choice(("node", "cluster"))] = rng.choice(("", "x" * 129, "a b", "é"))
            return Case("out-of-range-hello", PRE, pack(body), MALFORMED)
        kind = rng.choice(("reports", "forgotten", "collected", "floor", "peers", "runs"))
        doc = rng.choice(DOC_POOL)
        if kind == "reports":
            body = {"t": "reports", "members": [[big, {doc: [1, 1]}]], "forgotten": []}
        elif kind == "forgotten":
            body = {"t": "reports", "members": [], "forgotten": [big]}
        elif kind == "collected":
            body = {
                "t": "collected",
                "doc": doc,
                "ranges": [[1, [5, 5]]],
                "rehung": [],
                "floor": [],
            }
        elif kind == "floor":
            body = {"t": "collected", "doc": doc, "ranges": [], "rehung": [], "floor": [1, big]}
        elif kind == "runs":
            body = {"t": "collected", "doc": doc, "ranges": [[1, [3]]], "rehung": [], "floor": []}
        else:
            body = {"t": "peers", "nodes": [rng.choice(("", "x" * 129, "bad id", "a/b"))]}
        return Case(f"out-of-range-{kind}", POST, pack(body), MALFORMED)

    def bad_doc_name(self) -> Case:
        name = self.rng.choice(
            ("", "a" * 1000, "../etc", "a\x00b", "doc/x", " ", "\u202e", 5, b"doc")
        )
        body = self.valid_body(self.rng.choice(("diff", "push", "collected", "svs")))
        if body["t"] == "push":
            body["updates"][0][0] = name
        elif body["t"] == "svs":
            body["docs"] = {name: b"\x00"} if isinstance(name, str) else {"fuzz-0": name}
        else:
            body["doc"] = name
        return Case(f"bad-doc-name-{body['t']}", POST, pack(body), MALFORMED)

    def truncated_inside(self) -> Case:
        """A valid frame whose update or state vector bytes are cut short."""
        body = self.valid_body(self.rng.choice(("diff", "push", "svs")))
        if body["t"] == "diff":
            body["update"] = body["update"][: self.rng.randrange(1, len(body["update"]) - 1)]
        elif body["t"] == "push":
            update = body["updates"][-1][1]
            body["updates"][-1][1] = update[: self.rng.randrange(1, len(update) - 1)]
        else:
            # A state vector claiming more clients than it holds.
            body["docs"] = {self.rng.choice(DOC_POOL): b"\x05\x01"}
        return Case(f"truncated-inside-{body['t']}", POST, pack(body), MALFORMED)

    def truncated_msgpack(self) -> Case:
        data = pack(self._body())
        return Case(
            "truncated-msgpack", self.phase, data[: self.rng.randrange(len(data))], MALFORMED
        )

    def huge_count(self) -> Case:
        """Containers claiming far more items than they hold, or just too many."""
        rng = self.rng
        choice = rng.randrange(4)
        if choice == 0:  # an array32 header claiming 2**32-1 items, then nothing
            data = b"\x82\xa1t\xa4push\xa7updates\xdd\xff\xff\xff\xff"
            return Case("huge-count-array", self.phase, data, MALFORMED)
        if choice == 1:  # a map32 header claiming 2**32-1 pairs
            return Case("huge-count-map", self.phase, b"\xdf\xff\xff\xff\xff\xa1t", MALFORMED)
        if choice == 2:  # a bin32 claiming 4 GiB
            data = b"\x83\xa1t\xa4diff\xa3doc\xa6fuzz-0\xa6update\xc6\xff\xff\xff\xff"
            return Case("huge-count-bin", self.phase, data, MALFORMED)
        # More documents than one state-vector frame may name (a real count).
        docs = {f"many-{i}": b"\x00" for i in range(self.limits.max_documents_per_frame + 1)}
        body = {"t": "svs", "docs": docs, "reply": False}
        return Case("huge-count-docs", self.phase, pack(body), MALFORMED)

    def oversized(self) -> Case:
        """Just over a limit: a non-diff frame, a diff, or the transport's."""
        rng = self.rng
        limits = self.limits
        which = rng.choice(("frame", "diff", "transport"))
        limit = {
            "frame": limits.max_frame_bytes,
            "diff": limits.max_diff_frame_bytes,
            "transport": limits.transport_bytes,
        }[which]
        target = limit + rng.randrange(1, 64)
        body: dict[str, Any]
        if which == "frame":
            body = {"t": "push", "updates": [[DOC_POOL[0], b""]]}
        else:
            body = {"t": "diff", "doc": DOC_POOL[0], "update": b""}
        # The bin header only grows with the filler: the frame ends up over target.
        filler = rng.randbytes(target - len(pack(body)))
        if which == "frame":
            body["updates"][0][1] = filler
        else:
            body["update"] = filler
        data = pack(body)
        return Case(f"oversized-{which}", self.phase, data, TOO_BIG)

    def deep_nesting(self) -> Case:
        """100,000 nested arrays or maps."""
        if self.rng.random() < 0.5:
            data = b"\x91" * 100_000 + b"\xc0"
        else:  # a diff whose update is 50,000 nested maps
            data = b"\x83\xa1t\xa4diff\xa3doc\xa6fuzz-0\xa6update" + b"\x81\xa1k" * 50_000 + b"\xc0"
        # Within the frame limit the decoder parses it (and refuses the depth); over
        # it, the size is refused first (since protocol version 4 a diff frame is
        # held to max_frame_bytes too: big diffs come in parts).
        expect = MALFORMED if len(data) <= self.limits.max_frame_bytes else TOO_BIG
        return Case("deep-nesting", self.phase, data, expect)

    def garbage(self) -> Case:
        """Not a protocol frame at all: random bytes, a scalar, a list, trailing data."""
        rng = self.rng
        choice = rng.randrange(5)
        if choice == 0:
            # Random bytes that happen to decode still name no frame type.
            data = rng.randbytes(rng.randrange(1, 200))
        elif choice == 1:
            data = pack(rng.choice((None, 1, "hello", b"\x00", 2.5, True)))
        elif choice == 2:
            data = pack([self._body()])
        elif choice == 3:
            data = pack(self._body()) + b"\xc0"  # trailing bytes after the frame
        else:
            data = b""
        return Case("garbage", self.phase, data, MALFORMED)

    def second_hello(self) -> Case:
        return Case("second-hello", POST, pack(hello_body(self.node_id(), self.cluster)), MALFORMED)

    def text_message(self) -> Case:
        text = self.rng.choice(('{"t": "hello"}', "", "x" * 100))
        return Case("text-message", self.phase, text.encode(), MALFORMED, text=True)

    def hello_mutated(self) -> Case:
        """Hello near-misses: one field wrong, missing or extra."""
        return self.rng.choice(
            (self.wrong_type, self.missing_field, self.extra_field, self.out_of_range)
        )()

    def hello_refused(self) -> Case:
        """Well-formed hellos the node's policy refuses: no common version, other cluster."""
        if self.rng.random() < 0.5:
            body = hello_body(self.node_id(), self.cluster, [self.rng.randrange(4, 1000)])
        else:
            other = "".join(self.rng.choices(string.ascii_lowercase, k=8))
            body = hello_body(self.node_id(), f"other-{other}")
        return Case("hello-refused", PRE, pack(body), REFUSED)

    def before_hello(self) -> Case:
        """A valid frame of another type where the hello must come."""
        body = self.valid_body()
        return Case(f"before-hello-{body['t']}", PRE, pack(body), MALFORMED)
