"""The stable-frontier tracker (edgestate.sync.frontier); the reports frame that
carries its reports is tests/sync/test_reports_frame.py.

Every ``round()`` gets an explicit ``now`` so nothing depends on wall time.
"""

from __future__ import annotations

import pytest

from edgestate.sync.frontier import MAX_ROUNDS, FrontierTracker, covers

ME, PEER, OTHER = 1, 2, 3


def tracker(grace_s: float = 10.0, local: frozenset[str] = frozenset()) -> FrontierTracker:
    """A tracker for member ME, with a 10 s grace period unless told otherwise."""
    return FrontierTracker(ME, local=local, grace_s=grace_s)


# --- covers ---------------------------------------------------------------------


def test_covers_compares_state_vectors_componentwise() -> None:
    assert covers({}, {})
    assert covers({1: 3}, {})
    assert covers({1: 3, 2: 1}, {1: 3})
    assert covers({1: 3}, {1: 3, 2: 0})  # a missing client counts as clock 0
    assert not covers({1: 3}, {1: 4})
    assert not covers({1: 3}, {2: 1})
    assert not covers({}, {1: 1})


# --- merge ----------------------------------------------------------------------


def test_a_new_tracker_knows_only_itself() -> None:
    t = tracker()
    assert t.members == [ME]
    assert t.reports == {ME: {}}


def test_merge_takes_the_componentwise_max_per_member_and_document() -> None:
    t = tracker()
    assert t.merge({PEER: {"a": {1: 3, 2: 7}}})
    assert t.reports[PEER] == {"a": {1: 3, 2: 7}}
    # Partly older, partly newer, one new client: max per client.
    assert t.merge({PEER: {"a": {1: 2, 2: 9, 3: 1}}})
    assert t.reports[PEER] == {"a": {1: 3, 2: 9, 3: 1}}
    # Another document of the same member, and another member, stay separate.
    assert t.merge({PEER: {"b": {4: 4}}, OTHER: {"a": {1: 1}}})
    assert t.reports == {
        ME: {},
        PEER: {"a": {1: 3, 2: 9, 3: 1}, "b": {4: 4}},
        OTHER: {"a": {1: 1}},
    }
    assert t.members == [ME, PEER, OTHER]


def test_merge_returns_false_when_nothing_new_was_learned() -> None:
    t = tracker()
    assert t.merge({PEER: {"a": {1: 3, 2: 7}}})
    assert not t.merge({PEER: {"a": {1: 3, 2: 7}}})  # the same report again
    assert not t.merge({PEER: {"a": {1: 1}}})  # an older report
    assert not t.merge({PEER: {"a": {1: 3, 2: 0}}})  # clock 0 is nothing new
    assert not t.merge({PEER: {}})  # a known member with no documents
    assert not t.merge({})
    assert t.reports[PEER] == {"a": {1: 3, 2: 7}}


def test_merge_is_order_independent() -> None:
    reports = [
        {PEER: {"a": {1: 3}}},
        {PEER: {"a": {2: 5}}, OTHER: {"b": {9: 9}}},
        {PEER: {"a": {1: 1, 2: 6}}},
    ]
    forward, backward = tracker(), tracker()
    for r in reports:
        forward.merge(r)
    for r in reversed(reports):
        backward.merge(r)
    assert (
        forward.reports
        == backward.reports
        == {
            ME: {},
            PEER: {"a": {1: 3, 2: 6}},
            OTHER: {"b": {9: 9}},
        }
    )


def test_merge_of_a_new_member_without_documents_is_news() -> None:
    t = tracker()
    assert t.merge({PEER: {}})
    assert t.members == [ME, PEER]
    assert t.reports[PEER] == {}


def test_merge_ignores_forgotten_members() -> None:
    t = tracker()
    t.merge({PEER: {"a": {1: 1}}})
    assert t.forget(PEER)
    assert not t.merge({PEER: {"a": {1: 5}}})
    assert PEER not in t.reports
    assert t.members == [ME]
    # Other members in the same batch still merge.
    assert t.merge({PEER: {"a": {1: 9}}, OTHER: {"a": {1: 2}}})
    assert t.reports == {ME: {}, OTHER: {"a": {1: 2}}}


# --- round ----------------------------------------------------------------------


def test_no_frontier_on_the_first_round() -> None:
    t = tracker(grace_s=0.0)
    t.merge({ME: {"a": {1: 5}}, PEER: {"a": {1: 5}}})
    assert t.round(["a"], now=0.0) == {}
    # With no grace period the very next round may use the first one.
    assert t.round(["a"], now=0.0) == {"a": {1: 5}}


def test_a_round_is_usable_only_once_it_is_grace_s_old() -> None:
    t = tracker()
    t.merge({ME: {"a": {1: 5}}, PEER: {"a": {1: 5}}})
    assert t.round(["a"], now=100.0) == {}
    assert t.round(["a"], now=105.0) == {}
    assert t.round(["a"], now=109.0) == {}
    assert t.round(["a"], now=110.0) == {"a": {1: 5}}  # exactly grace_s old
    # That round is used up; the next ones are not old enough yet.
    assert t.round(["a"], now=111.0) == {}
    assert t.round(["a"], now=114.0) == {}
    # The round at 105 is 10 s old at 115 (and the newest such round).
    assert t.round(["a"], now=115.0) == {"a": {1: 5}}


def test_frontier_is_the_inf_of_the_chosen_round_not_of_now() -> None:
    t = tracker()
    t.merge({ME: {"a": {1: 5, 2: 1}}, PEER: {"a": {1: 3, 2: 4}}})
    assert t.round(["a"], now=0.0) == {}  # Inf {1: 3, 2: 1}, Sup {1: 5, 2: 4}
    # Both catch up past round 0's Sup; Inf(now) is larger than Inf(0).
    t.merge({ME: {"a": {1: 8, 2: 6}}, PEER: {"a": {1: 8, 2: 6}}})
    assert t.round(["a"], now=10.0) == {"a": {1: 3, 2: 1}}
    assert t.round(["a"], now=20.0) == {"a": {1: 8, 2: 6}}


def test_frontier_waits_until_inf_covers_the_sup_of_the_round() -> None:
    t = tracker()
    t.merge({ME: {"a": {ME: 5}}, PEER: {"a": {ME: 3}}})
    assert t.round(["a"], now=0.0) == {}  # t1: Inf {1: 3}, Sup {1: 5}
    # PEER lags: Inf(now) = {1: 3} does not cover Sup(t1) = {1: 5}, however old.
    assert t.round(["a"], now=10.0) == {}
    assert t.round(["a"], now=20.0) == {}
    assert t.round(["a"], now=1000.0) == {}
    # PEER catches up; ME writes on meanwhile.
    assert t.merge({PEER: {"a": {ME: 5}}, ME: {"a": {ME: 6}}})
    # Inf {1: 5} covers every earlier Sup ({1: 5}); the newest such round old
    # enough is the one at 1000, whose Inf was {1: 3}.
    assert t.round(["a"], now=1010.0) == {"a": {ME: 3}}
    # Rounds up to the chosen one are used up: the round at 1010 (Inf {1: 5},
    # Sup {1: 6}) needs PEER to reach {1: 6} first.
    assert t.round(["a"], now=1020.0) == {}
    t.merge({PEER: {"a": {ME: 6}}})
    assert t.round(["a"], now=1030.0) == {"a": {ME: 5}}


def test_the_newest_usable_round_is_chosen() -> None:
    t = tracker()
    t.merge({ME: {"a": {1: 1}}, PEER: {"a": {1: 1}}})
    assert t.round(["a"], now=0.0) == {}
    t.merge({ME: {"a": {1: 2}}, PEER: {"a": {1: 2}}})
    assert t.round(["a"], now=1.0) == {}
    t.merge({ME: {"a": {1: 3}}, PEER: {"a": {1: 3}}})
    assert t.round(["a"], now=2.0) == {}
    # At 11.5 the rounds at 0 and 1 are old enough, the one at 2 is not.
    assert t.round(["a"], now=11.5) == {"a": {1: 2}}
    assert t.round(["a"], now=12.0) == {"a": {1: 3}}


def test_documents_have_independent_rounds() -> None:
    t = tracker()
    t.merge({ME: {"a": {1: 1}, "b": {1: 4}}, PEER: {"a": {1: 1}, "b": {1: 2}}})
    assert t.round(["a", "b"], now=0.0) == {}
    assert t.round(["a", "b"], now=10.0) == {"a": {1: 1}}  # PEER lags on b only
    # A document not named in a round gets no round.
    t.merge({PEER: {"b": {1: 4}}})
    assert t.round(["a"], now=20.0) == {"a": {1: 1}}
    assert t.round(["b"], now=20.0) == {"b": {1: 2}}


def test_a_member_without_a_report_for_a_document_blocks_only_that_document() -> None:
    t = tracker()
    t.merge({ME: {"a": {1: 5}, "b": {1: 7}}, PEER: {"a": {1: 5}}})
    assert t.round(["a", "b"], now=0.0) == {}
    assert t.round(["a", "b"], now=10.0) == {"a": {1: 5}}
    assert t.round(["a", "b"], now=100.0) == {"a": {1: 5}}
    # PEER reports b: b's rounds start now, not at 0.
    assert t.merge({PEER: {"b": {1: 7}}})
    assert t.round(["a", "b"], now=105.0) == {}
    assert t.round(["a", "b"], now=110.0) == {"a": {1: 5}}
    assert t.round(["a", "b"], now=115.0) == {"a": {1: 5}, "b": {1: 7}}


def test_a_document_me_has_no_report_of_gets_no_frontier() -> None:
    t = tracker()
    t.merge({PEER: {"a": {1: 5}}})
    assert t.round(["a"], now=0.0) == {}
    assert t.round(["a"], now=10.0) == {}


def test_a_new_member_clears_the_rounds() -> None:
    t = tracker()
    t.merge({ME: {"a": {1: 5}}, PEER: {"a": {1: 5}}})
    assert t.round(["a"], now=0.0) == {}
    # OTHER appears (already caught up): the round at 0 is no evidence about it.
    assert t.merge({OTHER: {"a": {1: 5}}})
    assert t.members == [ME, PEER, OTHER]
    assert t.round(["a"], now=10.0) == {}
    assert t.round(["a"], now=15.0) == {}
    assert t.round(["a"], now=20.0) == {"a": {1: 5}}


def test_news_from_a_known_member_keeps_the_rounds() -> None:
    t = tracker()
    t.merge({ME: {"a": {1: 5}}, PEER: {"a": {1: 3}}})
    assert t.round(["a"], now=0.0) == {}
    assert t.merge({PEER: {"a": {1: 5}}})  # news, but no new member
    assert t.round(["a"], now=10.0) == {"a": {1: 3}}


def test_a_new_member_without_a_report_blocks_until_it_reports_and_rounds_age() -> None:
    t = tracker()
    t.merge({ME: {"a": {1: 5}}, PEER: {"a": {1: 5}}})
    assert t.round(["a"], now=0.0) == {}
    assert t.merge({OTHER: {}})
    assert t.round(["a"], now=10.0) == {}
    assert t.round(["a"], now=20.0) == {}
    t.merge({OTHER: {"a": {1: 5}}})
    assert t.round(["a"], now=30.0) == {}
    assert t.round(["a"], now=40.0) == {"a": {1: 5}}


# --- forget ---------------------------------------------------------------------


def test_forget_removes_a_lagging_member_and_clears_the_rounds() -> None:
    t = tracker()
    t.merge({ME: {"a": {1: 5}}, PEER: {"a": {1: 1}}})
    assert t.round(["a"], now=0.0) == {}
    assert t.round(["a"], now=10.0) == {}  # PEER lags
    assert t.forget(PEER)
    assert t.members == [ME]
    assert PEER in t.forgotten
    # Rounds computed with PEER are gone: without that, the round at 0 would
    # already be usable here (Inf {1: 5} covers its Sup {1: 5}).
    assert t.round(["a"], now=20.0) == {}
    assert t.round(["a"], now=30.0) == {"a": {1: 5}}


def test_forget_returns_whether_it_was_a_member() -> None:
    t = tracker()
    t.merge({PEER: {}})
    assert t.forget(PEER)
    assert not t.forget(PEER)
    assert not t.forget(OTHER)  # never known, but remembered as forgotten
    assert t.forgotten == {PEER, OTHER}
    assert not t.merge({OTHER: {"a": {1: 1}}})
    assert t.members == [ME]


def test_forgetting_itself_is_refused_and_changes_nothing() -> None:
    t = tracker()
    t.merge({ME: {"a": {1: 5}}, PEER: {"a": {1: 5}}})
    assert t.round(["a"], now=0.0) == {}
    with pytest.raises(ValueError, match="itself"):
        t.forget(ME)
    assert t.members == [ME, PEER]
    assert t.forgotten == set()
    assert t.round(["a"], now=10.0) == {"a": {1: 5}}  # rounds were kept


def test_forget_clears_rounds_of_every_document() -> None:
    t = tracker()
    both = {"a": {1: 1}, "b": {1: 2}}
    t.merge({ME: both, PEER: both, OTHER: both})
    assert t.round(["a", "b"], now=0.0) == {}
    t.forget(OTHER)
    assert t.round(["a", "b"], now=10.0) == {}
    assert t.round(["a", "b"], now=20.0) == {"a": {1: 1}, "b": {1: 2}}


# --- local documents ------------------------------------------------------------


def test_local_documents_use_only_my_report() -> None:
    t = tracker(local=frozenset({"l"}))
    t.merge(
        {
            ME: {"l": {ME: 5}, "r": {ME: 5}},
            PEER: {"l": {ME: 1}, "r": {ME: 1}},  # PEER lags on both
            OTHER: {"r": {ME: 5}},  # OTHER never reported l
        }
    )
    assert t.round(["l", "r"], now=0.0) == {}
    assert t.round(["l", "r"], now=10.0) == {"l": {ME: 5}}
    t.merge({ME: {"l": {ME: 8}}})
    assert t.round(["l", "r"], now=20.0) == {"l": {ME: 5}}
    assert t.round(["l", "r"], now=30.0) == {"l": {ME: 8}}


def test_a_local_document_i_never_reported_gets_no_frontier() -> None:
    t = tracker(local=frozenset({"l"}))
    t.merge({PEER: {"l": {1: 1}}})
    assert t.round(["l"], now=0.0) == {}
    assert t.round(["l"], now=10.0) == {}


# --- pack / unpack --------------------------------------------------------------


def test_pack_unpack_round_trip_keeps_reports_and_forgotten() -> None:
    big = (1 << 53) - 1
    t = tracker()
    t.merge(
        {
            ME: {"a": {ME: 5, big: 2}, "b": {ME: 1}},
            PEER: {"a": {ME: 4, 1 << 40: 9}},
            big: {"c": {big: 1 << 40}},
            OTHER: {},
        }
    )
    t.forget(OTHER)
    t.forget(77)
    back = FrontierTracker.unpack(t.pack(), ME, local=frozenset({"l"}), grace_s=3.5)
    assert back.me == ME
    assert back.reports == t.reports
    assert back.forgotten == {OTHER, 77}
    assert back.members == t.members == [ME, PEER, big]
    assert back.local == frozenset({"l"})
    assert back.grace_s == 3.5
    # Keys come back as ints (not str), so merging an equal report is no news.
    assert not back.merge({PEER: {"a": {ME: 4, 1 << 40: 9}}})
    assert not back.merge({OTHER: {"a": {1: 1}}})


def test_unpack_of_nothing_is_a_fresh_tracker() -> None:
    t = FrontierTracker.unpack(None, ME, local=frozenset({"l"}), grace_s=7.0)
    assert t.reports == {ME: {}}
    assert t.forgotten == set()
    assert t.local == frozenset({"l"})
    assert t.grace_s == 7.0


def test_unpacked_tracker_computes_frontiers() -> None:
    t = tracker()
    t.merge({ME: {"a": {1: 5}}, PEER: {"a": {1: 5}}})
    back = FrontierTracker.unpack(t.pack(), ME, grace_s=10.0)
    assert back.round(["a"], now=0.0) == {}
    assert back.round(["a"], now=10.0) == {"a": {1: 5}}


def test_an_empty_state_vector_is_a_report_and_unblocks_the_document() -> None:
    t = FrontierTracker(1, grace_s=10)
    assert t.merge({2: {"a": {}}})  # member 2 holds nothing of "a": that is news
    t.merge({1: {"a": {1: 1}}})
    t.round(["a"], now=0)
    t.merge({2: {"a": {1: 1}}})  # and now it has caught up
    t.round(["a"], now=10)
    assert t.round(["a"], now=20) == {"a": {1: 1}}


def test_a_grace_longer_than_the_kept_rounds_is_still_reached() -> None:
    t = FrontierTracker(1, grace_s=5 * (MAX_ROUNDS + 10))
    t.merge({1: {"a": {1: 1}}})
    found = [t.round(["a"], now=5.0 * i) for i in range(3 * MAX_ROUNDS)]
    assert any(found)
