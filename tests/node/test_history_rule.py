"""The conflict rule of module history (edgestate.node.history) on real stored
records: the same keys give the same active version whatever order they came in."""

from __future__ import annotations

import itertools

import msgpack

from edgestate.node import history as H


def _entry(name: str, version: str, stamp: int) -> tuple[str, bytes]:
    wasm, manifest = f"wasm {version}".encode(), f'{{"version": "{version}"}}'.encode()
    key = H.entry_key(name, wasm, manifest)
    raw = H.pack_entry(
        wasm, manifest, b"sig", version=version, publisher="p", node="n", stamp=stamp
    )
    return key, raw


def _activation(name: str, replica: int, entry: str, version: str, stamp: int) -> tuple[str, bytes]:
    record = {"op": "deploy", "entry": entry, "version": version, "stamp": stamp, "node": "n"}
    return f"{name}/a/{replica}", bytes(msgpack.packb({**record, "at": 1.0}))


def test_highest_stamp_wins_then_replica_in_any_order() -> None:
    e1, e2, e3 = _entry("m", "0.1.0", 1), _entry("m", "0.2.0", 2), _entry("m", "0.3.0", 3)
    acts = [
        _activation("m", 7, e1[0], "0.1.0", 50),
        _activation("m", 9, e3[0], "0.3.0", 40),
        _activation("m", 3, e2[0], "0.2.0", 50),  # same stamp as replica 7: 7 wins
    ]
    for order in itertools.permutations([e1, e2, e3, *acts]):
        history = H.resolve("m", dict(order))
        assert history.active is not None and history.active.version == "0.1.0"
        assert history.activation is not None and history.activation.replica == 7


def test_a_winner_whose_entry_was_dropped_falls_back_deterministically() -> None:
    e2, e3 = _entry("m", "0.2.0", 2), _entry("m", "0.3.0", 3)
    gone = H.entry_key("m", b"dropped", b"elsewhere")
    values = dict(
        [e2, e3, _activation("m", 1, gone, "0.1.0", 90), _activation("m", 2, e2[0], "0.2.0", 80)]
    )
    assert H.resolve("m", values).active == H.resolve("m", dict(reversed(values.items()))).active
    active = H.resolve("m", values).active
    assert active is not None and active.version == "0.2.0"
    # No activation names a kept entry at all: the newest deployed one.
    only = dict([e2, e3, _activation("m", 1, gone, "0.1.0", 90)])
    fallback = H.resolve("m", only).active
    assert fallback is not None and fallback.version == "0.3.0"


def test_unreadable_records_are_skipped_not_fatal() -> None:
    e1 = _entry("m", "0.1.0", 1)
    values = dict([e1, ("m/a/5", b"\xc1 not msgpack"), ("m/v/junk", b"\x00"), ("m/zz", b"?")])
    history = H.resolve("m", values)
    assert history.active is not None and history.active.version == "0.1.0"
    assert len(history.keys) == 4  # a removal still deletes them all
