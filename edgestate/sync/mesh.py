"""The bounded mesh: which known peers this node dials, and which it lets dial it.

``Mesh`` applies ``topology`` to the live peer table. The dialer asks it, before
each dial, whether an address is chosen (``wanted``) and waits on it otherwise
(that address shows as ``standby``); the daemon asks it whether to admit an
inbound connection (``check_inbound``: a refusal closes with 1013 and a reason
starting ``mesh_full``, and the dialer then picks another peer). ``run`` keeps
the choice current: at every change of the table, and a rotation of one random
link every ``rotate_s``. The daemon starts ``run`` and stops it; with
``max_peers = 0`` there is no ``Mesh`` and every known peer is dialed (a full
mesh). See docs/mesh.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time

from edgestate.errors import MeshFullError
from edgestate.sync import topology
from edgestate.sync.channel import CloseCode
from edgestate.sync.connection import CLOSE_WAIT_S, PeerConnection
from edgestate.sync.peers import PeerRecord, PeerTable

log = logging.getLogger(__name__)

# A chosen peer not linked within this long (down, or refusing) is set aside and
# another chosen: long enough for a dial with its first retries, short enough
# that a node whose picks went away is not left with few links for long.
LINK_WAIT_S = 5.0
# ...and is not chosen again for this long (it may be back by then).
COOL_S = 30.0
# The choice is also checked this often without any table change (cooling ends,
# a pick that never answers): cheap, a few set operations.
RECHECK_S = 1.0


class Mesh:
    """The bounded-mesh policy of one node over its peer table."""

    def __init__(
        self,
        me: str,
        table: PeerTable[PeerConnection],
        *,
        max_peers: int,
        rotate_s: float,
        rng: random.Random | None = None,
    ) -> None:
        self._me = me
        self._table = table
        self.max_peers = max_peers
        self._rotate_s = rotate_s
        # Links being closed because they were rotated out: run() lets them finish
        # when it stops (a close cancelled half way can leave aiohttp's transport
        # open), bounded by CLOSE_WAIT_S.
        self._closing: set[asyncio.Task[None]] = set()
        self._rng = rng or random.Random()
        self.chosen: set[str] = set()
        self._cooling: dict[str, float] = {}  # address -> monotonic time it may be chosen
        self._waiting: dict[str, float] = {}  # chosen address -> since when not linked
        self._changed = asyncio.Event()
        self._ending: set[PeerConnection] = set()
        self.rotations = 0

    # --- what the dialer and the daemon ask -------------------------------------------

    def wanted(self, record: PeerRecord) -> bool:
        """Whether to dial ``record``'s address now."""
        return record.address in self.chosen

    async def wait_changed(self) -> None:
        """Return at the next change of the choice (bound it with a timeout)."""
        await self._changed.wait()

    def dial_ended(self, record: PeerRecord, close_code: int | None) -> None:
        """A dial of ours ended; a peer that was full is set aside for a while."""
        if close_code == CloseCode.TRY_AGAIN_LATER and record.address is not None:
            self._cool(record.address)
            self.reconcile()

    def check_inbound(self, conn: PeerConnection) -> None:
        """Raise MeshFullError if this node takes no more inbound links."""
        conns = self._table.conns
        if conn.dialed_by_us or conn.node_id is None or conn.node_id in conns:
            return  # ours, or a duplicate: the duplicate rule decides
        inbound = sum(1 for c in conns.values() if not c.dialed_by_us)
        known_ids = {r.node_id for r in self._table.records.values() if r.node_id}
        if not topology.accept_inbound(
            self._me, conn.node_id, inbound, len(conns), known_ids, self.max_peers
        ):
            raise MeshFullError(
                f"mesh_full: {len(conns)} links, {inbound} inbound (sync.max_peers "
                f"{self.max_peers}); dial another peer"
            )

    # --- keeping the choice current ----------------------------------------------------

    def reconcile(self) -> None:
        """Recompute the choice from the table; close our links no longer chosen."""
        now = time.monotonic()
        records = self._table.records
        conns = self._table.conns
        known = {a: r.node_id for a, r in records.items() if r.address is not None}
        for addr in list(self.chosen):
            record = records.get(addr)
            if record is not None and record.node_id in conns:
                self._waiting.pop(addr, None)
            elif now - self._waiting.setdefault(addr, now) > LINK_WAIT_S:
                self._cool(addr)
        for addr, until in list(self._cooling.items()):
            if until <= now:
                del self._cooling[addr]
        chosen = topology.choose_links(
            self._me,
            known,
            self.chosen,
            self.max_peers,
            self._rng,
            cooling=set(self._cooling),
            linked_ids=set(conns),
        )
        self._set(chosen)

    def rotate(self) -> None:
        """Swap one random link for a peer not linked now (islands do not last)."""
        records = self._table.records
        known = {a: r.node_id for a, r in records.items() if r.address is not None}
        chosen = topology.rotate(
            self._me,
            known,
            self.chosen,
            self.max_peers,
            self._rng,
            linked_ids=set(self._table.conns),
        )
        if chosen != self.chosen:
            self.rotations += 1
        self._set(chosen)

    def _set(self, chosen: set[str]) -> None:
        if chosen == self.chosen:
            return
        now = time.monotonic()
        for addr in chosen - self.chosen:
            self._waiting[addr] = now
        for addr in self.chosen - chosen:
            self._waiting.pop(addr, None)
        self.chosen = chosen
        # Only links we dialed: the peer's own choice is its business, so the two
        # ends never fight over one link.
        for conn in self._table.connections():
            record = conn.record
            if conn.dialed_by_us and record is not None and record.address not in chosen:
                if conn not in self._ending:
                    log.debug("mesh: closing link to %s (no longer chosen)", conn.node_id)
                    self._ending.add(conn)
                    task = asyncio.get_running_loop().create_task(self._end(conn))
                    self._closing.add(task)
                    task.add_done_callback(self._closing.discard)
        self._changed.set()
        self._changed = asyncio.Event()

    async def _end(self, conn: PeerConnection) -> None:
        try:
            async with asyncio.timeout(CLOSE_WAIT_S):
                await conn.close(CloseCode.OK, "mesh: link rotated out")
        except Exception as exc:  # the link is going anyway; its own task cleans up
            log.debug("mesh: closing a rotated-out link: %s", exc)
        finally:
            self._ending.discard(conn)

    def _cool(self, addr: str) -> None:
        self._cooling[addr] = time.monotonic() + COOL_S
        self._waiting.pop(addr, None)

    async def run(self) -> None:
        """Keep the choice current until cancelled (the daemon owns this task)."""
        next_rotation = time.monotonic() + self._jitter()
        try:
            while True:
                self.reconcile()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(RECHECK_S):
                        await self._table.wait_changed()
                if time.monotonic() >= next_rotation:
                    self.rotate()
                    next_rotation = time.monotonic() + self._jitter()
        finally:
            if self._closing:
                # Each is bounded by CLOSE_WAIT_S itself; nothing outlives run().
                await asyncio.wait(list(self._closing), timeout=CLOSE_WAIT_S)
                for task in list(self._closing):
                    task.cancel()

    def _jitter(self) -> float:
        # Nodes started together must not all rotate in the same instant.
        return self._rng.uniform(self._rotate_s / 2, self._rotate_s * 1.5)
