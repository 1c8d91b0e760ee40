"""Client tokens: scoped credentials for ``/yjs/{doc}``, so browsers need no admin token.

A token reads ``est_<id>_<secret>``: ``id`` (12 hex digits) names it in
``edgestate token list`` / ``revoke``; ``secret`` is 32 random bytes (urlsafe
base64). Only SHA-256 of the secret is kept: the secret has 256 bits of entropy,
so a plain hash cannot be brute-forced and a slow password hash would buy nothing.
It is shown once, by ``token create``.

A token grants documents by pattern: ``notes`` is that one document, ``team-*``
every document whose name starts with ``team-``, ``*`` every document. It is
read-write unless ``read_only``; ``create`` also lets it create a missing
document its patterns cover (a grant of its own). It may expire.

Tokens are node-local: the book lives in the node's store as node-local metadata
(``local\\0client-tokens`` in the ``meta`` table), never replicated, so a token
works on the node that made it and revoking it there takes effect at once.
Revoked and expired records are kept (``token list`` shows them, and a use says
which) until :data:`KEEP_ENDED_S` after they ended.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import time
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

from edgestate.errors import (
    InvalidGrantError,
    InvalidTokenError,
    TokenExpiredError,
    TokenRevokedError,
    TokenScopeError,
    UnknownTokenError,
)

if TYPE_CHECKING:
    from edgestate.store import Store

TOKEN_PREFIX = "est_"
LOCAL_NAME = "client-tokens"
_FORMAT = 1
_TOKEN = re.compile(r"est_([0-9a-f]{12})_([A-Za-z0-9_\-]{43})")
_PATTERN = re.compile(r"[A-Za-z0-9_.\-]{1,64}|[A-Za-z0-9_.\-]{0,63}\*")
_DURATION = re.compile(r"([0-9]+)([smhdw])")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
# The whole book is rewritten on every change and held in memory to check a
# connection without a store read: bounded so neither grows without limit.
MAX_TOKENS = 10_000
# Patterns per token: a token is meant for one app's documents, and every
# connection checks them all.
MAX_PATTERNS = 64
MAX_LABEL_CHARS = 200
# Ended (revoked or expired) records are kept this long so a use is answered
# "revoked"/"expired" rather than "unknown", then dropped at the next change.
KEEP_ENDED_S = 30 * 86400


@dataclass(frozen=True, slots=True)
class TokenRecord:
    """One issued token as stored: its grants, never its secret."""

    id: str
    sha256: str
    docs: tuple[str, ...]
    read_only: bool
    create: bool
    created_at: float
    expires_at: float | None
    revoked_at: float | None
    label: str | None

    def state(self, now: float) -> str:
        """``active``, ``expired`` or ``revoked``."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and now >= self.expires_at:
            return "expired"
        return "active"

    def covers(self, doc: str) -> bool:
        """Whether one of the token's patterns names ``doc``."""
        return any(doc.startswith(p[:-1]) if p.endswith("*") else doc == p for p in self.docs)

    def row(self, now: float) -> dict[str, Any]:
        """The JSON form shown by ``token list`` and the API (no hash)."""
        out = asdict(self)
        del out["sha256"]
        out["docs"] = list(self.docs)
        out["state"] = self.state(now)
        return out


def check_pattern(pattern: str) -> str:
    """``pattern`` if it is a document name or a prefix ending in ``*``, else raise."""
    if not isinstance(pattern, str) or not _PATTERN.fullmatch(pattern):
        raise InvalidGrantError(
            f"document pattern {str(pattern)[:80]!r}: give a document name (1-64 of "
            "A-Z a-z 0-9 _ . -), a prefix ending in '*' (team-*), or '*' for every document"
        )
    return pattern


def parse_duration(text: str) -> float:
    """Seconds in a duration such as ``90s``, ``30m``, ``24h``, ``7d``, ``2w``."""
    match = _DURATION.fullmatch(text.strip())
    if not match or int(match[1]) == 0:
        raise InvalidGrantError(
            f"expiry {text[:40]!r}: give a positive whole number and a unit s, m, h, d or w "
            "(e.g. 24h)"
        )
    return float(int(match[1]) * _UNIT_S[match[2]])


class TokenBook:
    """The issued tokens of one node, in memory; :meth:`pack` / :meth:`load` persist it."""

    def __init__(self, records: dict[str, TokenRecord] | None = None) -> None:
        self.records: dict[str, TokenRecord] = dict(records or {})

    @classmethod
    def load(cls, raw: bytes | None) -> TokenBook:
        """The book saved by :meth:`pack` (empty if never saved)."""
        if raw is None:
            return cls()
        data = json.loads(raw)
        if data.get("format") != _FORMAT:
            raise InvalidGrantError(
                f"the client-token book has format {data.get('format')!r}; "
                f"this version reads {_FORMAT}"
            )
        records = {}
        for item in data["tokens"]:
            item["docs"] = tuple(item["docs"])
            records[item["id"]] = TokenRecord(**item)
        return cls(records)

    def pack(self) -> bytes:
        """The book as stored."""
        tokens = [asdict(r) for r in self.records.values()]
        return json.dumps({"format": _FORMAT, "tokens": tokens}, sort_keys=True).encode()

    def issue(
        self,
        docs: list[str],
        *,
        read_only: bool = False,
        create: bool = False,
        expires_in_s: float | None = None,
        label: str | None = None,
        now: float | None = None,
    ) -> tuple[str, TokenRecord]:
        """A new token (the only time its secret exists) and its record, added to the book."""
        now = time.time() if now is None else now
        if not docs:
            raise InvalidGrantError("a token needs at least one document pattern (--doc)")
        if len(docs) > MAX_PATTERNS:
            raise InvalidGrantError(f"{len(docs)} document patterns, over {MAX_PATTERNS}")
        patterns = tuple(dict.fromkeys(check_pattern(p) for p in docs))
        if read_only and create:
            raise InvalidGrantError(
                "a read-only token cannot create documents: drop --create or --read-only"
            )
        if expires_in_s is not None and not expires_in_s > 0:
            raise InvalidGrantError(f"expiry must be in the future, got {expires_in_s} s")
        if label is not None and len(label) > MAX_LABEL_CHARS:
            raise InvalidGrantError(f"label is {len(label)} characters, over {MAX_LABEL_CHARS}")
        self._drop_ended(now)
        if len(self.records) >= MAX_TOKENS:
            raise InvalidGrantError(
                f"this node holds {MAX_TOKENS} tokens, the limit: revoke some first"
            )
        token_id = secrets.token_hex(6)
        while token_id in self.records:
            token_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        record = TokenRecord(
            id=token_id,
            sha256=_digest(secret),
            docs=patterns,
            read_only=read_only,
            create=create,
            created_at=now,
            expires_at=None if expires_in_s is None else now + expires_in_s,
            revoked_at=None,
            label=label,
        )
        self.records[token_id] = record
        return f"{TOKEN_PREFIX}{token_id}_{secret}", record

    def revoke(self, token_id: str, now: float | None = None) -> TokenRecord:
        """Mark ``token_id`` revoked (again is fine); its record."""
        record = self.records.get(token_id)
        if record is None:
            raise UnknownTokenError(f"no token {token_id[:40]!r} was issued by this node")
        if record.revoked_at is None:
            record = replace(record, revoked_at=time.time() if now is None else now)
            self.records[token_id] = record
        return record

    def authenticate(self, token: str, now: float | None = None) -> TokenRecord:
        """The active record of ``token``, or raise saying why it is not one."""
        now = time.time() if now is None else now
        match = _TOKEN.fullmatch(token)
        record = self.records.get(match[1]) if match else None
        if (
            match is None
            or record is None
            or not hmac.compare_digest(_digest(match[2]), record.sha256)
        ):
            raise InvalidTokenError("the token is neither the admin token nor a token of this node")
        state = record.state(now)
        if state == "revoked":
            raise TokenRevokedError(f"token {record.id} was revoked")
        if state == "expired":
            raise TokenExpiredError(f"token {record.id} expired")
        return record

    def authorize(self, token: str, doc: str, now: float | None = None) -> TokenRecord:
        """Like :meth:`authenticate`, and the token must cover ``doc``."""
        record = self.authenticate(token, now)
        if not record.covers(doc):
            raise TokenScopeError(
                f"token {record.id} does not grant document {doc!r} "
                f"(it grants {', '.join(record.docs)})"
            )
        return record

    def rows(self, now: float | None = None) -> list[dict[str, Any]]:
        """Every record's JSON form, oldest first."""
        now = time.time() if now is None else now
        records = sorted(self.records.values(), key=lambda r: (r.created_at, r.id))
        return [r.row(now) for r in records]

    def _drop_ended(self, now: float) -> None:
        for token_id, r in list(self.records.items()):
            ended = r.revoked_at if r.revoked_at is not None else r.expires_at
            if ended is not None and ended <= now - KEEP_ENDED_S:
                del self.records[token_id]


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def load_book(store: Store) -> TokenBook:
    """The token book saved in ``store``."""
    return TokenBook.load(store.get_local(LOCAL_NAME))


def save_book(store: Store, book: TokenBook) -> None:
    """Durably save ``book`` in ``store`` (a data directory opened by the CLI)."""
    store.put_local(LOCAL_NAME, book.pack())


async def asave_book(store: Store, book: TokenBook) -> None:
    """Async form of :func:`save_book` (the node's own store)."""
    await store.aput_local(LOCAL_NAME, book.pack())
