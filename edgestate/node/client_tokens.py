"""The node's client tokens: the book in memory, changes saved before they count.

A connection is checked against the in-memory book (no store read); a change is
made on a copy, saved durably, and only then swapped in, so a failed save
changes nothing. Revoking a token also closes the clients connected with it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from edgestate.node.tokens import TokenBook, TokenRecord, asave_book, load_book
from edgestate.store import Store


class ClientTokens:
    """Issue, list, revoke and check this node's client tokens."""

    def __init__(self, store: Store, on_revoke: Callable[[str], object]) -> None:
        self._store = store
        self._book = load_book(store)
        self._on_revoke = on_revoke
        self._lock = asyncio.Lock()  # one change at a time: each rewrites the whole book

    def authorize(self, token: str, doc: str) -> TokenRecord:
        """The record of an active ``token`` that covers ``doc``, or raise why not."""
        return self._book.authorize(token, doc)

    def rows(self) -> list[dict[str, Any]]:
        """Every token's JSON form (grants and state, never secrets)."""
        return self._book.rows()

    async def issue(self, docs: list[str], **grant: Any) -> tuple[str, TokenRecord]:
        """A new token and its record, saved before it is returned."""
        async with self._lock:
            book = TokenBook(self._book.records)
            token, record = book.issue(docs, **grant)
            await asave_book(self._store, book)
            self._book = book
        return token, record

    async def revoke(self, token_id: str) -> TokenRecord:
        """Revoke ``token_id`` durably, then close its connected clients."""
        async with self._lock:
            book = TokenBook(self._book.records)
            record = book.revoke(token_id)
            await asave_book(self._store, book)
            self._book = book
        self._on_revoke(token_id)
        return record
