"""The bounded mesh's choice of links (edgestate.sync.topology): pure functions."""

from __future__ import annotations

import random

import pytest

from edgestate.sync import topology


def addr(i: int) -> str:
    return f"127.0.0.1:{10000 + i}"


def node(i: int) -> str:
    return f"node-{i}"


def build_mesh(n: int, max_peers: int, seed: int, *, know_ids: bool = True) -> dict[str, set[str]]:
    """Every node chooses from everyone (ids known, as over mDNS, or not, as from
    a static list); inbound links over the cap are refused and the dialer picks
    again, as the live Mesh does. Returns node -> the nodes it is linked to."""
    rng = random.Random(seed)
    links: dict[str, set[str]] = {node(i): set() for i in range(n)}
    chosen: dict[str, set[str]] = {node(i): set() for i in range(n)}
    refused: dict[str, set[str]] = {node(i): set() for i in range(n)}
    inbound: dict[str, int] = {node(i): 0 for i in range(n)}
    order = list(range(n))
    for _ in range(4):  # a few rounds: refusals make dialers choose again
        rng.shuffle(order)
        for i in order:
            me = node(i)
            known = {addr(j): (node(j) if know_ids else None) for j in range(n) if j != i}
            picks = topology.choose_links(
                me,
                known,
                chosen[me],
                max_peers,
                rng,
                cooling=refused[me],
                linked_ids=links[me],
            )
            chosen[me] = picks
            for a in picks:
                peer = node(int(a.rsplit(":", 1)[1]) - 10000)
                if peer in links[me]:
                    continue
                ok = topology.accept_inbound(
                    peer, me, inbound[peer], len(links[peer]), set(links) - {peer}, max_peers
                )
                if ok:
                    links[me].add(peer)
                    links[peer].add(me)
                    inbound[peer] += 1
                else:
                    refused[me].add(a)
    return links


@pytest.mark.parametrize("n", [3, 10, 30, 60])
@pytest.mark.parametrize("max_peers", [2, 3, 4, 8])
def test_the_site_stays_connected_for_many_random_memberships(n: int, max_peers: int) -> None:
    for seed in range(8):
        links = build_mesh(n, max_peers, seed)
        assert topology.connected(links), (n, max_peers, seed)
        for peer, linked in links.items():
            assert len(linked) <= topology.hard_cap(max_peers), (peer, len(linked))


def test_ring_alone_connects_when_every_id_is_known() -> None:
    ids = [node(i) for i in range(50)]
    graph = {me: {topology.ring_neighbours(me, ids)[0] or me} for me in ids}
    assert topology.connected(graph)
    # Successor and predecessor agree: b follows a exactly when a precedes b.
    for me in ids:
        succ, _ = topology.ring_neighbours(me, ids)
        assert succ is not None and topology.ring_neighbours(succ, ids)[1] == me


def test_cap_respected_and_the_average_degree_is_max_peers() -> None:
    links = build_mesh(60, 8, seed=1)
    degrees = [len(v) for v in links.values()]
    assert max(degrees) <= 13
    assert sum(degrees) / len(degrees) <= 8.5  # not a full mesh (59)
    # What one node dials itself is half its budget.
    assert topology.out_target(8, 59) == 4


def test_a_small_site_stays_a_full_mesh() -> None:
    links = build_mesh(6, 8, seed=3)
    assert all(len(v) == 5 for v in links.values())
    # Down or refusing peers are not set aside there: they are retried as before.
    known = {addr(j): node(j) for j in range(1, 6)}
    assert topology.choose_links(node(0), known, (), 8, random.Random(1), cooling={addr(1)}) == set(
        known
    )
    assert topology.out_target(8, 8) == 8
    assert topology.out_target(0, 500) == 500  # 0: unlimited


def test_static_peers_without_ids_still_connect() -> None:
    # Ids unknown (a static list before any link): no ring, random choice only.
    for seed in range(8):
        assert topology.connected(build_mesh(40, 4, seed, know_ids=False)), seed


def test_choice_keeps_previous_picks_and_the_ring_successor() -> None:
    rng = random.Random(7)
    known = {addr(j): node(j) for j in range(1, 40)}
    first = topology.choose_links(node(0), known, (), 8, rng)
    assert len(first) == 4
    successor, _ = topology.ring_neighbours(node(0), list(known.values()))
    assert addr(int(successor.split("-")[1])) in first  # type: ignore[union-attr]
    again = topology.choose_links(node(0), known, first, 8, random.Random(99))
    assert again == first  # stable: no churn without a reason


def test_cooling_and_self_are_never_chosen() -> None:
    known = {addr(j): node(j) for j in range(20)}  # includes ourselves (node-0)
    cooling = {addr(j) for j in range(1, 15)}
    picks = topology.choose_links(node(0), known, (), 4, random.Random(1), cooling=cooling)
    ring_succ = topology.ring_neighbours(node(0), list(known.values()))[0]
    assert addr(0) not in picks
    assert all(a not in cooling or known[a] == ring_succ for a in picks)


def test_rotation_changes_links_but_keeps_the_ring() -> None:
    rng = random.Random(5)
    known = {addr(j): node(j) for j in range(1, 30)}
    chosen = topology.choose_links(node(0), known, (), 6, rng)
    successor, _ = topology.ring_neighbours(node(0), list(known.values()))
    ring_addr = addr(int(successor.split("-")[1]))  # type: ignore[union-attr]
    seen = set(chosen)
    for _ in range(30):
        rotated = topology.rotate(node(0), known, chosen, 6, rng)
        assert len(rotated) == len(chosen) and len(rotated - chosen) == 1
        assert ring_addr in rotated
        chosen = rotated
        seen |= chosen
    assert len(seen) > 15  # over time a node meets much of the site


def test_rotation_does_nothing_in_a_full_mesh() -> None:
    known = {addr(j): node(j) for j in range(1, 5)}
    assert topology.rotate(node(0), known, set(known), 8, random.Random(1)) == set(known)
    assert topology.rotate(node(0), known, set(known), 0, random.Random(1)) == set(known)


def test_inbound_cap_lets_the_ring_predecessor_in() -> None:
    ids = [node(i) for i in range(1, 30)]
    _, predecessor = topology.ring_neighbours(node(0), ids)
    assert predecessor is not None
    other = next(i for i in ids if i != predecessor)
    assert topology.accept_inbound(node(0), other, 3, 5, ids, 4)
    assert not topology.accept_inbound(node(0), other, 4, 6, ids, 4)
    assert topology.accept_inbound(node(0), predecessor, 4, 6, ids, 4)
    assert not topology.accept_inbound(node(0), predecessor, 5, 7, ids, 4)  # one beyond
    assert not topology.accept_inbound(node(0), predecessor, 4, 7, ids, 4)  # the hard cap
    assert topology.hard_cap(4) == 7 and topology.hard_cap(8) == 13
    assert topology.accept_inbound(node(0), other, 1000, 1000, ids, 0)


def test_connected_detects_islands() -> None:
    assert not topology.connected({"a": {"b"}, "c": {"d"}})
    assert topology.connected({"a": {"b"}, "b": {"c"}, "c": set()})
