"""The bounded mesh's choice of links: pure functions over what a node knows.

A node with ``max_peers > 0`` that knows more peers than that does not dial them
all. It dials a few (``out_target``): its **ring successor** (the next node id
round a ring ordered by a hash of the ids, so when every node knows the same
members the ring alone connects the site) plus **random** others, one of which
is replaced every ``rotate_s`` (Ditto-style churn: an island that random choice
made does not last). The peers that dial it make up the rest of its links; it
accepts those while it has fewer than ``max_peers`` inbound links, and its ring
predecessor always (up to ``hard_cap``), so a ring link is never locked out.

Both ends agree without a round trip: each side only ever closes links it
dialed, so a node dropping a peer from its choice never cuts a link that peer
chose. Everything here is deterministic given the ``random.Random`` passed in.
"""

from __future__ import annotations

import functools
import hashlib
import random
from collections.abc import Collection, Mapping

# Links a node dials at least: with two each, random choice alone (node ids not
# known yet, so no ring: static peers before first contact) makes a 2-out random
# graph, connected with high probability; one each leaves islands often.
MIN_OUT = 2


@functools.lru_cache(maxsize=4096)
def ring_key(node_id: str) -> bytes:
    """Position of ``node_id`` on the ring: a hash, so ids that sort together
    (``node1``, ``node2``...) spread round it and every node computes the same."""
    return hashlib.sha256(node_id.encode()).digest()[:8]


def ring_neighbours(me: str, ids: Collection[str]) -> tuple[str | None, str | None]:
    """(successor, predecessor) of ``me`` on the ring of ``ids`` plus ``me``."""
    ring = sorted({*ids, me} - {""}, key=lambda i: (ring_key(i), i))
    if len(ring) < 2:
        return None, None
    at = ring.index(me)
    return ring[(at + 1) % len(ring)], ring[(at - 1) % len(ring)]


def out_target(max_peers: int, known: int) -> int:
    """How many links this node dials itself: all it knows when that is within
    ``max_peers`` (a small site stays a full mesh, as before); otherwise half the
    budget, the peers that dial it making up the other half (average degree
    ``max_peers``), and at least ``MIN_OUT``."""
    if max_peers <= 0 or known <= max_peers:
        return known
    return max(MIN_OUT, max_peers // 2)


def hard_cap(max_peers: int) -> int:
    """Links a node holds at most once it knows more than ``max_peers`` peers: its
    own dials, ``max_peers`` inbound and its ring predecessor (13 for 8)."""
    return max(MIN_OUT, max_peers // 2) + max_peers + 1


def choose_links(
    me: str,
    known: Mapping[str, str | None],
    previous: Collection[str],
    max_peers: int,
    rng: random.Random,
    *,
    cooling: Collection[str] = (),
    linked_ids: Collection[str] = (),
) -> set[str]:
    """The addresses to dial: ``known`` maps address -> node id (None until first
    met). Keeps ``previous`` choices still known and not ``cooling`` (recently
    refused or unreachable), the ring successor, then fills at random up to
    ``out_target``. Peers already linked (``linked_ids``, whoever dialed) are
    not dialed again: that link serves both."""
    target = out_target(max_peers, len(known))
    if target >= len(known):
        # A full mesh (small site, or unlimited): every peer, down ones too, which
        # the dialer retries with backoff as it always did.
        return {a for a, node in known.items() if node != me}
    by_id = {node: addr for addr, node in known.items() if node}
    successor, _ = ring_neighbours(me, by_id)
    chosen: set[str] = set()
    if successor is not None and successor != me:
        chosen.add(by_id[successor])
    usable = [a for a in sorted(known) if a not in cooling and known[a] != me and a not in chosen]
    keep = [a for a in usable if a in previous]
    for addr in keep:
        if len(chosen) >= target:
            break
        chosen.add(addr)
    # Fill: peers not linked yet first (a new link widens the mesh), then any.
    fresh = [a for a in usable if a not in chosen and known[a] not in linked_ids]
    rng.shuffle(fresh)
    for addr in fresh:
        if len(chosen) >= target:
            break
        chosen.add(addr)
    return chosen


def rotate(
    me: str,
    known: Mapping[str, str | None],
    chosen: Collection[str],
    max_peers: int,
    rng: random.Random,
    *,
    linked_ids: Collection[str] = (),
) -> set[str]:
    """``chosen`` with one random link (never the ring successor) swapped for a
    peer not linked now; unchanged when there is nothing to swap."""
    if max_peers <= 0 or len(known) <= max_peers:
        return set(chosen)
    by_id = {node: addr for addr, node in known.items() if node}
    successor, _ = ring_neighbours(me, by_id)
    ring_addr = by_id.get(successor) if successor is not None else None
    droppable = sorted(a for a in chosen if a != ring_addr)
    spare = sorted(
        a
        for a in known
        if a not in chosen and known[a] != me and (known[a] is None or known[a] not in linked_ids)
    )
    if not droppable or not spare:
        return set(chosen)
    out = set(chosen)
    out.discard(rng.choice(droppable))
    out.add(rng.choice(spare))
    return out


def accept_inbound(
    me: str, peer: str, inbound: int, total: int, known_ids: Collection[str], max_peers: int
) -> bool:
    """Whether to take one more inbound link from ``peer``; ``inbound`` counts this
    node's current inbound links (``total`` all of them: a node linked to every
    peer it may hold takes no more)."""
    if max_peers <= 0:
        return True
    if total >= hard_cap(max_peers) or inbound > max_peers:
        return False
    if inbound < max_peers:
        return True
    _, predecessor = ring_neighbours(me, {*known_ids, peer})
    return predecessor == peer


def connected(graph: Mapping[str, Collection[str]]) -> bool:
    """Whether the undirected graph (node -> the nodes it links to) is one piece."""
    if not graph:
        return True
    adj: dict[str, set[str]] = {n: set() for n in graph}
    for node, others in graph.items():
        for other in others:
            adj.setdefault(node, set()).add(other)
            adj.setdefault(other, set()).add(node)
    start = next(iter(adj))
    seen = {start}
    todo = [start]
    while todo:
        for nxt in adj[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return len(seen) == len(adj)
