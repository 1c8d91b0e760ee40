"""The reports frame: member reports of the frontier tracker on the wire (round
trip, schema, wire shape, malformed and oversized frames refused)."""

from __future__ import annotations

import msgpack
import pytest

from edgestate.sync import frames
from edgestate.sync.frames import MalformedFrameError, RateLimitedError, Reports
from edgestate.sync.frontier import FrontierTracker
from tests.sync.test_frames import validate_wire
from tests.sync.test_frontier import ME, PEER, tracker


def decode(data: bytes, max_docs: int = 100) -> frames.Frame:
    return frames.decode(data, max_bytes=1 << 20, max_docs=max_docs)


def reports_frame(members: object) -> bytes:
    return bytes(
        msgpack.packb({"t": "reports", "members": members, "forgotten": []}, use_bin_type=True)
    )


REPORT_SAMPLES = [
    pytest.param(Reports({}), id="no-members"),
    pytest.param(Reports({1: {}}), id="no-documents"),
    pytest.param(Reports({1: {"docs": {}}}), id="empty-vector"),
    pytest.param(Reports({5: {"docs": {1: 2, 3: 4}, "x.y-z_1": {7: 0}}, 6: {}}), id="several"),
    pytest.param(
        Reports(
            {(1 << 32) + 1: {"a": {(1 << 40) + 3: (1 << 33) + 5}}, (1 << 53) - 1: {"b": {0: 1}}}
        ),
        id="ids-above-2**32",
    ),
]


@pytest.mark.parametrize("frame", REPORT_SAMPLES)
def test_reports_frames_round_trip_and_match_the_schema(frame: Reports) -> None:
    data = frames.encode(frame)
    assert decode(data) == frame
    validate_wire(data)


def test_reports_frame_wire_shape_is_a_list_of_flat_state_vectors() -> None:
    data = frames.encode(Reports({1 << 33: {"a": {1: 2, 3: 4}}}))
    assert msgpack.unpackb(data, raw=False) == {
        "t": "reports",
        "members": [[1 << 33, {"a": [1, 2, 3, 4]}]],
        "forgotten": [],
    }


def test_a_tracker_s_reports_survive_the_wire() -> None:
    t = tracker()
    t.merge({ME: {"a": {ME: 3}}, PEER: {"a": {ME: 2, 1 << 40: 6}}, 1 << 50: {}})
    received = decode(frames.encode(Reports(t.reports)))
    assert isinstance(received, Reports)
    other = FrontierTracker(PEER)
    assert other.merge(received.members)
    assert other.reports == t.reports
    assert not other.merge(received.members)


@pytest.mark.parametrize(
    "members",
    [
        pytest.param({}, id="members-a-map"),
        pytest.param(5, id="members-an-int"),
        pytest.param([[-1, {}]], id="member-negative"),
        pytest.param([["1", {}]], id="member-a-string"),
        pytest.param([[1.0, {}]], id="member-a-float"),
        pytest.param([[True, {}]], id="member-a-bool"),
        pytest.param([[None, {}]], id="member-none"),
        pytest.param([[1 << 53, {}]], id="member-2**53"),
        pytest.param([[1 << 63, {}]], id="member-2**63"),
        pytest.param([1], id="item-not-a-list"),
        pytest.param([[1]], id="item-too-short"),
        pytest.param([[1, {}, 2]], id="item-too-long"),
        pytest.param([[1, []]], id="docs-not-a-map"),
        pytest.param([[1, {"a": [1]}]], id="odd-length-vector"),
        pytest.param([[1, {"a": [1, 2, 3]}]], id="odd-length-vector-3"),
        pytest.param([[1, {"a": [1, "2"]}]], id="clock-a-string"),
        pytest.param([[1, {"a": [1, 2.0]}]], id="clock-a-float"),
        pytest.param([[1, {"a": [1, True]}]], id="clock-a-bool"),
        pytest.param([[1, {"a": [1, None]}]], id="clock-none"),
        pytest.param([[1, {"a": [1, -1]}]], id="clock-negative"),
        pytest.param([[1, {"a": [1, 1 << 53]}]], id="clock-2**53"),
        pytest.param([[1, {"a": ["1", 2]}]], id="client-a-string"),
        pytest.param([[1, {"a": [-1, 2]}]], id="client-negative"),
        pytest.param([[1, {"a": {"1": 2}}]], id="vector-a-map"),
        pytest.param([[1, {"a": b"\x01\x02"}]], id="vector-bytes"),
        pytest.param([[1, {"../etc": [1, 2]}]], id="doc-name-path"),
        pytest.param([[1, {"": [1, 2]}]], id="doc-name-empty"),
        pytest.param([[1, {"a" * 65: [1, 2]}]], id="doc-name-too-long"),
        pytest.param([[1, {"a b": [1, 2]}]], id="doc-name-space"),
        pytest.param([[1, {b"a": [1, 2]}]], id="doc-name-bytes"),
        pytest.param([[1, {}], [2, {"a": [1]}]], id="second-member-bad"),
    ],
)
def test_malformed_reports_frames_are_refused(members: object) -> None:
    with pytest.raises(MalformedFrameError):
        decode(reports_frame(members))


def test_reports_frame_with_missing_or_extra_fields_is_refused() -> None:
    for body in (
        {"t": "reports"},
        {"t": "reports", "members": []},
        {"t": "reports", "members": [], "forgotten": [], "extra": 1},
    ):
        with pytest.raises(MalformedFrameError, match="fields"):
            decode(bytes(msgpack.packb(body, use_bin_type=True)))


def test_reports_frame_with_non_string_map_keys_is_refused() -> None:
    data = bytes(msgpack.packb({"t": "reports", "members": [[1, {5: [1, 2]}]], "forgotten": []}))
    with pytest.raises(MalformedFrameError):
        decode(data)


def test_too_many_documents_in_one_report_are_rate_limited() -> None:
    ok = reports_frame([[1, {f"d{i}": [1, i] for i in range(3)}]])
    assert decode(ok, max_docs=3) == Reports({1: {f"d{i}": {1: i} for i in range(3)}})
    over = reports_frame([[1, {f"d{i}": [1, i] for i in range(4)}]])
    with pytest.raises(RateLimitedError):
        decode(over, max_docs=3)
    # The limit is per member's report.
    many = reports_frame([[m, {f"d{i}": [1, i] for i in range(3)}] for m in range(3)])
    assert isinstance(decode(many, max_docs=3), Reports)


def test_too_many_members_are_refused() -> None:
    data = reports_frame([[m, {}] for m in range(frames.MAX_PEERS + 1)])
    with pytest.raises(MalformedFrameError):
        decode(data)
    assert isinstance(decode(reports_frame([[m, {}] for m in range(frames.MAX_PEERS)])), Reports)
