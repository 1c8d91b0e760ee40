"""The frames of the node-to-node sync protocol as values: one frozen dataclass
per frame type, the protocol versions that introduced them and the limits on
their contents. The conversation and the codec are in ``edgestate.sync.frames``,
which re-exports everything here: import from there.
"""

from __future__ import annotations

from dataclasses import dataclass

# Versions this code speaks; hello negotiates the highest common one.
PROTOCOL_VERSIONS: tuple[int, ...] = (1, 2, 3, 4, 5)
# The first version with ``reports`` frames.
REPORTS_VERSION = 2
# The first version whose diffs carry the collection record of their history.
RECORD_IN_DIFF_VERSION = 3
# The first version that sends big diffs as ``diff_part`` frames.
PARTS_VERSION = 4
# The first version with ``about`` frames (wall clock, replica id).
ABOUT_VERSION = 5
# Largest wall-clock value an about frame may carry (Unix seconds, year ~36812):
# anything above is no clock reading.
MAX_ABOUT_TIME = float(1 << 40)


@dataclass(frozen=True, slots=True)
class Hello:
    """First frame on each side: who we are and which versions we speak."""

    versions: tuple[int, ...]
    node: str
    cluster: str


@dataclass(frozen=True, slots=True)
class StateVectors:
    """Yjs v1 state vectors of the sender's replicated documents.

    The receiver answers with a ``Diff`` for each of its documents the sender
    lacks something of, and with its own ``StateVectors`` if ``reply`` is set.
    """

    docs: dict[str, bytes]
    reply: bool


@dataclass(frozen=True, slots=True)
class Diff:
    """A Yjs v1 update with what the receiver lacks; creates the document.

    ``collected`` (version 3, of the same document) is the sender's collection
    record of the history the update carries; the receiver applies both in one
    commit. None when the sender collected nothing or the record is too large for
    one collected frame's limits (then it follows as ``collected`` frames).
    """

    doc: str
    update: bytes
    collected: Collected | None = None


@dataclass(frozen=True, slots=True)
class Synced:
    """Ends the diffs that answer one ``StateVectors``: they are all applied.

    A node catching up holds its other handshakes until this arrives, so after a
    restart it fetches what it missed from one peer, not from every peer.
    """


@dataclass(frozen=True, slots=True)
class Peers:
    """The node ids the sender is connected to right now.

    The receiver does not relay an update it got from this sender to the
    sender's own peers: they got it from the sender already. That keeps a full
    mesh from carrying every update N times; anti-entropy heals the rare miss
    when a link drops while an update is in flight.
    """

    nodes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Push:
    """Update bytes of one or more commits, in commit order, as (doc, update)."""

    updates: tuple[tuple[str, bytes], ...]


@dataclass(frozen=True, slots=True)
class Reports:
    """Member (store replica id) -> document -> newest reported state vector.

    A state vector is a flat list ``[client, clock, client, clock, ...]``.
    ``forgotten`` lists members an operator removed: the receiver forgets them
    too, so a forget made on one node holds cluster-wide.
    """

    members: dict[int, dict[str, dict[int, int]]]
    forgotten: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class Collected:
    """What the sender garbage-collected of ``doc`` (version 2), so the receiver
    refuses the same stale writes: clock ranges and re-hang points as client ->
    flat ``[start, end, start, end, ...]``, and the floor (max of the frontiers
    used) as client -> clock."""

    doc: str
    ranges: dict[int, list[int]]
    rehung: dict[int, list[int]]
    floor: dict[int, int]


@dataclass(frozen=True, slots=True)
class DiffPart:
    """Slice ``index`` of ``count`` (version 4) of one encoded ``diff`` frame of ``doc``."""

    doc: str
    index: int
    count: int
    data: bytes


@dataclass(frozen=True, slots=True)
class About:
    """The sender's wall clock (Unix seconds) and store replica id (version 5)."""

    now: float
    replica: int


Frame = Hello | StateVectors | Diff | Push | Synced | Peers | Reports | Collected | DiffPart | About

# Most node ids one peers frame may list.
MAX_PEERS = 4096
# Most parts of one diff: a 1 GiB diff in 8 MiB parts is 128; this leaves room for
# peers whose frame limit (and so part size) is smaller.
MAX_PARTS = 1 << 16
