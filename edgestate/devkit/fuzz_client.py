"""Drives ``frame_fuzz`` cases into a node's sync endpoint over raw WebSockets.

One connection runs cases until the node closes it (then the next starts over
with a hello); an accepted case is confirmed by a state-vector probe the node
must answer. Loopback only: the runner refuses any other host.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import aiohttp
import msgpack

from edgestate.devkit.frame_fuzz import PRE, Case, hello_body, pack

# How long one case may take to be answered (accepted or closed) before the fuzz
# calls it a hang: far above any honest answer, far below the suite's patience.
CASE_TIMEOUT_S = 10.0
LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass
class Outcome:
    """What the node did with one case."""

    case: Case
    accepted: bool
    close_code: int | None  # None while accepted; 1006 for a connection cut without close

    @property
    def ok(self) -> bool:
        """Whether this is what the protocol demands."""
        if self.case.expect is None:
            return self.accepted
        return not self.accepted and self.close_code in self.case.expect


@dataclass
class Tally:
    """Counts of a campaign: cases per category, close codes, failures."""

    categories: collections.Counter[str] = field(default_factory=collections.Counter)
    close_codes: collections.Counter[int] = field(default_factory=collections.Counter)
    failures: list[Outcome] = field(default_factory=list)
    rejected: int = 0  # cases the node closed the connection for

    def add(self, outcome: Outcome) -> None:
        """Count one outcome."""
        self.categories[outcome.case.category] += 1
        if not outcome.accepted:
            self.rejected += 1
            self.close_codes[outcome.close_code or 1006] += 1
        if not outcome.ok:
            self.failures.append(outcome)


def _frame_type(data: bytes) -> object:
    try:
        body = msgpack.unpackb(data, raw=False)
    except ValueError:
        return None
    return body.get("t") if isinstance(body, dict) else None


class FuzzConnection:
    """A raw WebSocket to one node's ``/sync``, speaking only what the case says."""

    def __init__(
        self, session: aiohttp.ClientSession, host: str, port: int, cluster: str = "dev"
    ) -> None:
        if host not in LOOPBACK:
            raise ValueError(f"the fuzz client talks to loopback only, not {host}")
        self._session = session
        self._url = f"ws://{host}:{port}/sync"
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._cluster = cluster
        self._ids = 0

    async def _open(self) -> aiohttp.ClientWebSocketResponse:
        # No message limit of our own: the node's frames are not under test.
        ws = await self._session.ws_connect(self._url, max_msg_size=0, autoclose=False)
        self._ws = ws
        return ws

    async def _next(self, ws: aiohttp.ClientWebSocketResponse) -> aiohttp.WSMessage:
        return await ws.receive(timeout=CASE_TIMEOUT_S)

    async def _closed(self, ws: aiohttp.ClientWebSocketResponse) -> int:
        """Read until the node closes; its close code (1006 if the TCP just went)."""
        while True:
            msg = await self._next(ws)
            if msg.type == aiohttp.WSMsgType.CLOSE:
                await ws.close()
                return int(msg.data)
            if msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                return ws.close_code if ws.close_code not in (None, 1000) else 1006

    async def _until(self, ws: aiohttp.ClientWebSocketResponse, kind: str, count: int) -> bool:
        """Read until ``count`` frames of ``kind``; False if the node closed instead."""
        while count:
            msg = await self._next(ws)
            if msg.type != aiohttp.WSMsgType.BINARY:
                return False
            if _frame_type(msg.data) == kind:
                count -= 1
                if kind == "svs":
                    # The node holds its catch-up lock until we say we are synced.
                    await ws.send_bytes(pack({"t": "synced"}))
        return True

    async def run(self, case: Case) -> Outcome:
        """Send one case and see what the node makes of it."""
        ws = self._ws
        if case.phase == PRE:
            if ws is not None and not ws.closed:
                await ws.close()
            ws = await self._open()
            await self._until(ws, "hello", 1)
        elif ws is None or ws.closed:
            # The node closed on a case it should have taken: start a new one.
            ws = await self._open()
            await self._until(ws, "hello", 1)
            self._ids += 1
            await ws.send_bytes(pack(hello_body(f"fuzz-reopen-{self._ids}", self._cluster)))
            await self._until(ws, "svs", 1)
        if case.text:
            await ws.send_str(case.data.decode())
        else:
            await ws.send_bytes(case.data)
        if case.expect is not None:
            try:
                code = await self._closed(ws)
            except TimeoutError:
                # The node took the case (or hangs on it): either is a failure.
                await ws.close()
                self._ws = None
                return Outcome(case, True, None)
            self._ws = None
            return Outcome(case, False, code)
        if case.phase == PRE:
            # The node's handshake: peers, reports, then its state vectors.
            accepted = await self._until(ws, "svs", 1)
        else:
            # The node answers state vectors with diffs and a synced; our probe too.
            await ws.send_bytes(pack({"t": "svs", "docs": {}, "reply": False}))
            accepted = await self._until(ws, "synced", case.answers + 1)
        if not accepted:
            self._ws = None
            return Outcome(case, False, ws.close_code or 1006)
        return Outcome(case, True, None)

    async def close(self) -> None:
        """Close the current connection, if any."""
        if self._ws is not None and not self._ws.closed:
            await self._ws.close()
        self._ws = None


async def run_cases(
    cases: Iterator[Case],
    host: str,
    port: int,
    *,
    count: int,
    seconds: float,
    tally: Tally,
    stop_on_failure: bool = False,
) -> None:
    """Run up to ``count`` cases within ``seconds`` into the node at host:port
    (until the first unexpected outcome with ``stop_on_failure``)."""
    deadline = time.monotonic() + seconds
    async with aiohttp.ClientSession() as session:
        conn = FuzzConnection(session, host, port)
        try:
            for _ in range(count):
                if time.monotonic() > deadline:
                    break
                tally.add(await conn.run(next(cases)))
                if stop_on_failure and tally.failures:
                    break
        finally:
            await conn.close()
