"""Member reports are sent per link as what grew since that link was told: nothing
when nothing changed, only the grown clients otherwise, whole at connect and
every FULL_EVERY rounds; and across real nodes a changed frontier still reaches
every node of a chain while an idle cluster sends no reports frames."""

from __future__ import annotations

import itertools

import pytest

from edgestate.node.metrics import layer_metrics
from edgestate.store import Set, decode_state_vector
from edgestate.sync.frontier import FrontierTracker
from edgestate.sync.report_delta import SentReports
from tests.sync.conftest import Node, Nodes, eventually, exchanged, settled

DOC = "d"
# Rounds only when the test runs them (gc_round()), so counts are exact.
MANUAL_GC = dict(gc_round_s=3600.0, gc_grace_s=0.3)


def test_the_first_round_is_whole_and_an_unchanged_table_sends_nothing() -> None:
    t = FrontierTracker(me=1)
    t.merge({1: {"a": {1: 3}}, 2: {"a": {1: 2, 2: 5}, "b": {}}, 3: {}})
    sent = SentReports()
    whole, news = sent.delta(t.reports, t.forgotten)
    assert whole == {1: {"a": {1: 3}}, 2: {"a": {1: 2, 2: 5}, "b": {}}, 3: {}}
    assert news  # the forgotten list is news the first time, even empty
    assert sent.delta(t.reports, t.forgotten) == ({}, False)


def test_only_grown_clients_and_new_members_and_documents_are_sent() -> None:
    t = FrontierTracker(me=1)
    t.merge({1: {"a": {1: 3}}, 2: {"a": {1: 2, 2: 5}}})
    sent = SentReports()
    sent.delta(t.reports, t.forgotten)
    t.merge({2: {"a": {1: 3, 2: 5, 7: 1}, "c": {}}, 4: {}})
    delta, news = sent.delta(t.reports, t.forgotten)
    assert delta == {2: {"a": {1: 3, 7: 1}, "c": {}}, 4: {}}
    assert not news
    # What the peer builds from the deltas is what the whole table says.
    peer = FrontierTracker(me=9)
    peer.merge({1: {"a": {1: 3}}, 2: {"a": {1: 2, 2: 5}}})
    peer.merge(delta)
    assert {m: peer.reports[m] for m in t.reports} == t.reports


def test_what_the_peer_told_us_is_not_sent_back_to_it() -> None:
    t = FrontierTracker(me=1)
    t.merge({1: {"a": {1: 1}}, 2: {"a": {2: 4}}})
    sent = SentReports()
    sent.delta(t.reports, t.forgotten)
    # The peer tells us member 2 grew; we merge it, and need not echo it.
    news = {2: {"a": {2: 6, 3: 1}}}
    sent.heard(news)
    t.merge(news)
    assert sent.delta(t.reports, t.forgotten) == ({}, False)
    # What grew beyond what it told us still goes.
    t.merge({2: {"a": {2: 7, 3: 1}}})
    assert sent.delta(t.reports, t.forgotten) == ({2: {"a": {2: 7}}}, False)
    # A member not yet sent to it whole is sent whole whatever it told us.
    sent.heard({5: {"a": {5: 1}}})
    t.merge({5: {"a": {5: 1}}})
    assert sent.delta(t.reports, t.forgotten)[0] == {5: {"a": {5: 1}}}


def test_forgotten_changes_are_news_and_gone_members_are_sent_whole_if_back() -> None:
    t = FrontierTracker(me=1)
    t.merge({1: {"a": {1: 1}}, 2: {"a": {2: 4}}})
    sent = SentReports()
    sent.delta(t.reports, t.forgotten)
    t.forget(2)
    delta, news = sent.delta(t.reports, t.forgotten)
    assert (delta, news) == ({}, True)
    # A member dropped meanwhile (expired) that is heard of again is news whole.
    t2 = FrontierTracker(me=1)
    t2.merge({1: {"a": {1: 1}}, 5: {"a": {5: 2}}})
    s2 = SentReports()
    s2.delta(t2.reports, t2.forgotten)
    del t2.reports[5]
    assert s2.delta(t2.reports, t2.forgotten) == ({}, False)
    t2.merge({5: {"a": {5: 2}}})
    assert s2.delta(t2.reports, t2.forgotten)[0] == {5: {"a": {5: 2}}}


def test_local_only_documents_never_leave_and_the_table_is_whole_again_periodically() -> None:
    t = FrontierTracker(me=1)
    t.merge({1: {"a": {1: 1}, "secret": {1: 9}}})
    sent = SentReports(full_every=3)
    first, _ = sent.delta(t.reports, t.forgotten, local_only={"secret"})
    assert first == {1: {"a": {1: 1}}}
    assert sent.delta(t.reports, t.forgotten, {"secret"}) == ({}, False)
    assert sent.delta(t.reports, t.forgotten, {"secret"}) == ({}, False)
    # Round 4: whole again (a report lost to anything unforeseen heals).
    assert sent.delta(t.reports, t.forgotten, {"secret"}) == ({1: {"a": {1: 1}}}, True)
    sent.reset()
    assert sent.delta(t.reports, t.forgotten, {"secret"})[0] == {1: {"a": {1: 1}}}


def reports_out(group: list[Node]) -> int:
    return sum(n.daemon.stats.reports_out for n in group)


async def gc_rounds(group: list[Node]) -> None:
    for node in group:
        await node.daemon.gc_round()


async def senders_past_round(chain: list[Node]) -> None:
    """Return once every link's sender went past the last round's reports: each
    runs a state exchange (no writes, no new documents) after them."""
    for node, peer in itertools.pairwise(chain):
        await exchanged(node, peer)
        await exchanged(peer, node)


def reported(node: Node, of: Node) -> dict[int, int]:
    """What ``node``'s table says ``of``'s member holds of DOC."""
    return dict(node.daemon.frontier.reports.get(of.store.replica_id, {}).get(DOC, {}))


@pytest.mark.timeout(60)
async def test_an_idle_chain_sends_no_reports_and_a_change_still_reaches_every_node(
    nodes: Nodes,
) -> None:
    a = await nodes.start(**MANUAL_GC)
    b = await nodes.start([a], **MANUAL_GC)
    c = await nodes.start([b], **MANUAL_GC)  # c hears of a only through b
    chain = [a, b, c]
    a.store.create_document(DOC)
    a.store.batch([Set(DOC, "k", b"1")])
    await eventually(lambda: all(n.store.has_document(DOC) for n in chain))

    async def round_until(check: object) -> None:
        async def step() -> bool:
            await gc_rounds(chain)
            return bool(check())  # type: ignore[operator]

        for _ in range(200):
            if await step():
                return
            await settled(chain)
        raise AssertionError("reports did not get there")

    own_a = lambda: decode_state_vector(a.store.state_vector(DOC))  # noqa: E731
    await round_until(lambda: reported(c, a) == own_a() and reported(a, c) != {})

    # Idle: once what the markers above made has spread, rounds with nothing
    # new send no reports frame on any link.
    async def idle_round() -> int:
        before = reports_out(chain)
        await gc_rounds(chain)
        await senders_past_round(chain)
        return reports_out(chain) - before

    for _ in range(10):
        if await idle_round() == 0:
            break
    else:
        raise AssertionError("reports frames every round with nothing new")
    for _ in range(3):
        assert await idle_round() == 0
    before = reports_out(chain)

    # A write on c: its report grows, and two hops away a learns it.
    c.store.batch([Set(DOC, "k", b"2")])
    await eventually(lambda: a.store.get(DOC, "k") == b"2")
    own_c = lambda: decode_state_vector(c.store.state_vector(DOC))  # noqa: E731
    await round_until(lambda: reported(a, c) == own_c() and reported(b, a) == own_a())
    assert reports_out(chain) > before
    # And an operator sees the count on /metrics.
    for n in chain:
        (family,) = [
            m for m in layer_metrics(n.store, n.daemon) if m.name == "edgestate_sync_reports_sent"
        ]
        assert family.samples[0].value == n.daemon.stats.reports_out
