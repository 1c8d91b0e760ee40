"""Garbage collection of overwritten map entries: bounded disk, nothing lost, no divergence."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from pycrdt import Doc, Map

from edgestate.errors import StaleReplicaError, StoreError
from edgestate.store import Durability, GcMode, Incr, Set, Store, StoreConfig
from edgestate.store.codec import decode_state_vector
from edgestate.store.gc import Ranges
from edgestate.store.gc_rule import collect, partial_replica, stale_reference

# Small compaction threshold: many compactions from few writes.
SMALL = dict(durability=Durability.BATCHED, compact_min_log_bytes=4096)


def _sv(doc: Doc) -> dict[int, int]:
    return decode_state_vector(doc.get_state())


def _doc(client: int, update: bytes | None = None) -> tuple[Doc, Map]:
    doc: Doc = Doc(client_id=client)
    root = doc.get("root", type=Map)
    if update is not None:
        doc.apply_update(update)
    return doc, root


def _overwrite(store: Store, rounds: int, keys: int = 50, start: int = 0) -> None:
    for r in range(start, start + rounds):
        store.batch([Set("d", f"k{k:03d}", f"v{r}-{k}".encode()) for k in range(keys)])


# --- the rewrite itself (pycrdt documents, no store) ---------------------------------


def test_collect_keeps_values_and_state_vector_and_shrinks_history() -> None:
    doc, root = _doc(7)
    for i in range(5000):
        root[f"k{i % 100}"] = f"v{i}".encode()
    before = doc.get_update()
    result = collect(before, _sv(doc))
    assert result is not None
    assert len(result.update) < len(before) / 3
    fresh, fresh_root = _doc(7, result.update)
    assert _sv(fresh) == _sv(doc)
    assert fresh_root.to_py() == root.to_py()
    assert result.items_before - result.items_after == 4800  # 2 kept per key: root + live


def test_nothing_beyond_the_frontier_is_collected() -> None:
    doc, root = _doc(7)
    for i in range(300):
        root[f"k{i % 3}"] = b"x"
    assert collect(doc.get_update(), {}) is None
    partial = collect(doc.get_update(), {7: 150})
    assert partial is not None
    assert max(end for _, end in partial.ranges.by_client[7]) <= 150


def _random_cluster(seed: int) -> tuple[int, int]:
    """Replicas writing, syncing pairwise and collecting at a proven frontier."""
    rnd = random.Random(seed)
    ids = rnd.sample(range(1, 60), 4)
    reps = [_doc(i) for i in ids]
    keys = [f"k{i}" for i in range(rnd.choice([2, 5, 9]))]
    rounds: list[tuple[dict[int, int], dict[int, int]]] = []
    collected: dict[int, tuple[Ranges, Ranges, dict[int, int]]] = {}  # ranges, rehung, floor
    collections = refused = 0

    def inf_sup() -> tuple[dict[int, int], dict[int, int]]:
        svs = [_sv(d) for d, _ in reps]
        clients = set().union(*svs)
        return (
            {c: min(s.get(c, 0) for s in svs) for c in clients},
            {c: max(s.get(c, 0) for s in svs) for c in clients},
        )

    def sync(i: int, j: int) -> None:
        nonlocal refused
        target = reps[i][0]
        update = reps[j][0].get_update(target.get_state())
        mine, theirs = collected.get(i), collected.get(j)
        if theirs is not None and partial_replica(_sv(target), theirs[2]):
            refused += 1  # j would refuse to serve i
            return
        if mine is not None and stale_reference(update, mine[0], mine[1], _sv(target)):
            refused += 1
            return
        target.apply_update(update)

    for step in range(400):
        r = rnd.random()
        i = rnd.randrange(len(reps))
        if step % 40 == 39:
            for a in range(len(reps)):
                for b in range(len(reps)):
                    if a != b:
                        sync(a, b)
        elif r < 0.03 and len(reps) < 7:
            new = rnd.choice([x for x in range(1, 70) if x not in ids])
            ids.append(new)
            fresh = _doc(new)
            fresh[1][rnd.choice(keys)] = b"joined offline"  # writes before its first sync
            reps.append(fresh)
        elif r < 0.6:
            reps[i][1][rnd.choice(keys)] = f"{i}-{step}".encode()
        elif r < 0.9:
            j = rnd.randrange(len(reps))
            if i != j:
                sync(i, j)
        else:
            inf, sup = inf_sup()
            usable = [r1 for r1 in rounds if all(inf.get(c, 0) >= k for c, k in r1[1].items())]
            rounds.append((inf, sup))
            if not usable:
                continue
            result = collect(reps[i][0].get_update(), usable[-1][0])
            if result is None:
                continue
            collections += 1
            doc, root = _doc(ids[i], result.update)
            assert _sv(doc) == _sv(reps[i][0]) and root.to_py() == reps[i][1].to_py()
            reps[i] = (doc, root)
            frontier = usable[-1][0]
            old = collected.get(i)
            collected[i] = (
                (
                    old[0].union(result.ranges),
                    old[1].union(result.rehung),
                    {
                        c: max(old[2].get(c, 0), frontier.get(c, 0))
                        for c in old[2].keys() | frontier.keys()
                    },
                )
                if old is not None
                else (result.ranges, result.rehung, dict(frontier))
            )
    for _ in range(2):
        for a in range(len(reps)):
            for b in range(len(reps)):
                if a != b:
                    sync(a, b)
    values = [root.to_py() for _, root in reps]
    assert all(v == values[0] for v in values), f"seed {seed} diverged"
    return collections, refused


def test_collected_and_full_histories_converge_under_random_concurrency() -> None:
    """Replicas that collected and ones that did not agree on every key, and no
    member's write is ever refused (the frontier rule is what makes that so)."""
    total = 0
    for seed in range(60):
        collections, refused = _random_cluster(seed)
        assert refused == 0, f"seed {seed}: a member's write was refused"
        total += collections
    assert total > 50  # the property was exercised, not skipped


def test_a_write_built_on_collected_history_is_detected() -> None:
    a, a_root = _doc(1)
    for i in range(20):
        a_root[f"k{i % 2}"] = f"a{i}".encode()
    offline, offline_root = _doc(2, a.get_update())  # a replica that then drops out
    for i in range(20):
        a_root[f"k{i % 2}"] = f"b{i}".encode()
    offline_root["k0"] = b"written on an old view"
    result = collect(a.get_update(), _sv(a))  # the offline one was forgotten
    assert result is not None
    why = stale_reference(offline.get_update(a.get_state()), result.ranges, result.rehung, _sv(a))
    assert why is not None and "garbage-collected" in why
    floor = _sv(a)
    assert partial_replica(_sv(offline), floor) is not None
    assert partial_replica({}, floor) is None  # a fresh replica is fine
    assert partial_replica({5: 3}, floor) is None  # with writes of its own too
    assert partial_replica(_sv(a), floor) is None  # so is one that has it all


def _sync(dst: Doc, src: Doc) -> None:
    dst.apply_update(src.get_update(dst.get_state()))


def _garbage(root: Map) -> None:
    for i in range(200):  # enough overwrites for a collection to be worth it
        root[f"g{i % 4}"] = f"{i}".encode()


def test_a_replica_holding_a_collected_item_but_not_the_one_re_hung_is_refused(
    solo: Store,
) -> None:
    """Found in review: it held every collected clock, passed the old range-end
    check, then put the re-hung item before the collected one: the key vanished."""
    a, a_root = _doc(1)
    s, s_root = _doc(3)
    b, b_root = _doc(2)
    a_root["k"] = b"P"
    _sync(s, a)
    _garbage(s_root)
    s_root["k"] = b"s"
    client, _ = _doc(77, s.get_update())  # a Yjs client that goes offline
    _sync(b, s)
    b_root["k"] = b"K"
    solo.apply_update("d", b.get_update(), origin="peer:b")
    solo.compact("d")
    solo.compact("d")
    assert solo.gc_status("d").collected_items > 0
    with pytest.raises(StaleReplicaError, match="afresh"):
        solo.diff("d", client.get_state())


def test_a_write_hung_where_a_collected_run_hung_is_refused(solo: Store) -> None:
    """Found in review: an offline replica holding only the parent P of a collected
    run wrote on P; here it would be a sibling of the re-hung item, on a full
    history a sibling of the collected one, ordered differently."""
    a, a_root = _doc(10)
    s, s_root = _doc(20)
    k, k_root = _doc(40)
    a_root["k"] = b"P"
    client, client_root = _doc(30, a.get_update())  # holds only P, goes offline
    _sync(s, a)
    _garbage(s_root)
    s_root["k"] = b"s"
    _sync(k, s)
    k_root["k"] = b"K"
    solo.apply_update("d", k.get_update(), origin="peer:k")
    solo.compact("d")
    solo.compact("d")
    assert solo.gc_status("d").collected_items > 0
    client_root["k"] = b"W, written offline on P"
    with pytest.raises(StaleReplicaError, match="re-hung"):
        solo.apply_update("d", client.get_update(), origin="client")
    assert solo.get("d", "k") == b"K"


# --- the store ---------------------------------------------------------------------


@pytest.fixture
def solo(tmp_path: Path) -> Iterator[Store]:
    store = Store.open(tmp_path / "s", StoreConfig(gc=GcMode.SOLO, **SMALL))  # type: ignore[arg-type]
    store.create_document("d")
    yield store
    store.close()


def test_disk_stays_bounded_under_endless_overwrites(tmp_path: Path) -> None:
    sizes = {}
    for mode in (GcMode.OFF, GcMode.SOLO):
        with Store.open(tmp_path / mode.value, StoreConfig(gc=mode, **SMALL)) as store:  # type: ignore[arg-type]
            store.create_document("d")
            _overwrite(store, 200)
            store.compact("d")
            store.compact("d")
            first = store.document_info("d").snapshot_bytes
            _overwrite(store, 400, start=200)
            store.compact("d")
            store.compact("d")
            sizes[mode] = (first, store.document_info("d").snapshot_bytes)
    off_first, off_last = sizes[GcMode.OFF]
    solo_first, solo_last = sizes[GcMode.SOLO]
    assert off_last > 2 * off_first  # without collection it grows with overwrites
    # With it, it does not. Slack: a collection runs only when its garbage is at
    # least a quarter of what it parses, so some garbage may wait for later.
    assert solo_last <= solo_first * 1.5
    assert solo_last < off_last / 10


def test_collection_loses_nothing_across_reopen(tmp_path: Path) -> None:
    config = StoreConfig(gc=GcMode.SOLO, **SMALL)  # type: ignore[arg-type]
    with Store.open(tmp_path / "s", config) as store:
        store.create_document("d")
        _overwrite(store, 100)
        store.batch([Incr("d", "hits", 1) for _ in range(300)])
        for _ in range(200):
            store.incr("d", "hits", 2)
        store.compact("d")
        store.compact("d")
        assert store.gc_status("d").collected_items > 0
        expected = {k: v for k, v in store.scan("d", limit=1000).items}
        sv = store.state_vector("d")
        # The live CRDT (swapped in by collections made while writes went on)
        # holds exactly what the materialized table says.
        _, live_root = _doc(99, store.diff("d"))
        plain = {k: v for k, v in expected.items() if k != "hits"}
        assert {k: bytes(v) for k, v in live_root.to_py().items()} == plain
    with Store.open(tmp_path / "s", config) as store:
        assert {k: v for k, v in store.scan("d", limit=1000).items} == expected
        assert store.get_counter("d", "hits") == 700
        assert decode_state_vector(store.state_vector("d")) == decode_state_vector(sv)
        assert store.gc_status("d").collected_items > 0  # persisted
        store.set("d", "k000", b"after reopen")  # the collected doc takes new writes
        assert store.get("d", "k000") == b"after reopen"


def test_cluster_mode_collects_only_up_to_the_frontier_it_is_given(tmp_path: Path) -> None:
    config = StoreConfig(gc=GcMode.CLUSTER, **SMALL)  # type: ignore[arg-type]
    with Store.open(tmp_path / "c", config) as store:
        store.create_document("d")
        _overwrite(store, 50)
        store.compact("d")
        assert store.gc_status("d").collected_items == 0  # nobody proved anything yet
        store.set_gc_frontier("d", decode_state_vector(store.state_vector("d")))
        store.compact("d")
        status = store.gc_status("d")
        assert status.collected_items > 0 and status.frontier is not None


def test_a_stale_update_is_refused_and_nothing_is_lost(solo: Store) -> None:
    _overwrite(solo, 200, keys=2)
    offline, offline_root = _doc(424242, solo.diff("d"))  # a replica that then drops out
    _overwrite(solo, 200, keys=2, start=200)
    solo.compact("d")
    solo.compact("d")
    assert solo.gc_status("d").collected_items > 0
    offline_root["k000"] = b"built on an overwritten value"
    before = solo.get("d", "k000")
    with pytest.raises(StaleReplicaError, match="garbage-collected"):
        solo.apply_update("d", offline.get_update(), origin="peer:x")
    assert solo.get("d", "k000") == before
    with pytest.raises(StaleReplicaError, match="afresh"):
        solo.diff("d", offline.get_state())
    # A fresh replica still gets everything, and the store keeps taking writes.
    _, fresh_root = _doc(5, solo.diff("d", Doc().get_state()))
    assert fresh_root["k000"] == before
    solo.set("d", "k001", b"still serving")
    assert solo.get("d", "k001") == b"still serving"


def test_a_corrupt_collection_record_is_refused_by_name(tmp_path: Path) -> None:
    import lmdb

    config = StoreConfig(gc=GcMode.SOLO, **SMALL)  # type: ignore[arg-type]
    with Store.open(tmp_path / "s", config) as store:
        store.create_document("d")
        _overwrite(store, 100)
        store.compact("d")
        store.compact("d")
    env = lmdb.open(str(tmp_path / "s"), max_dbs=16, map_size=config.map_size)
    with env.begin(write=True) as txn:
        txn.put(b"gc\x00d", b"\xc1 not msgpack", db=env.open_db(b"meta", txn=txn))
    env.close()
    with pytest.raises(StoreError, match=r"garbage-collection record of document 'd'.*corrupt"):
        Store.open(tmp_path / "s", config)
    # The refused open released the directory: reading it still works.
    with Store.open(tmp_path / "s", readonly=True) as ro:
        assert ro.get("d", "k000") == b"v99-0"


@pytest.mark.parametrize("evict_max_keys", [50_000, 10], ids=["small", "big"])
def test_the_live_crdt_shrinks_too_and_keeps_taking_writes(
    tmp_path: Path, evict_max_keys: int
) -> None:
    """The collected CRDT replaces the loaded one (caught up with writes made while
    it was built), for documents over the big-document threshold too."""
    config = StoreConfig(gc=GcMode.CLUSTER, evict_max_keys=evict_max_keys, **SMALL)  # type: ignore[arg-type]
    with Store.open(tmp_path / "s", config) as store:
        store.create_document("d")
        _overwrite(store, 300)  # compacted on the way, nothing collected: no frontier yet
        before = len(store.diff("d"))  # encoded from the live CRDT in memory
        store.set_gc_frontier("d", decode_state_vector(store.state_vector("d")))
        store.compact("d")
        assert "d" in store.loaded_documents()
        after = len(store.diff("d"))
        assert after < before / 3
        assert after <= store.document_info("d").snapshot_bytes * 1.2
        _overwrite(store, 5, start=300)
        assert store.get("d", "k007") == b"v304-7"


def test_a_failed_install_keeps_history_and_the_writer_alive(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found in review: an exception while installing a collection (a full disk)
    killed the writer thread and hung every later caller."""
    import edgestate.store.compaction as compaction_module

    failures: list[str] = []

    def fail(*args: object) -> None:
        failures.append("install")
        raise OSError("no space left on device (injected)")

    config = StoreConfig(gc=GcMode.SOLO, **SMALL)  # type: ignore[arg-type]
    with Store.open(tmp_path / "s", config) as store:
        store.create_document("d")
        monkeypatch.setattr(compaction_module.Compactor, "_caught_up", fail)
        _overwrite(store, 100)
        store.compact("d")
        store.compact("d")
        assert failures  # installs were attempted...
        assert store.gc_status("d").collected_items == 0  # ...and every one failed
        store.set("d", "k000", b"still writing")
        assert store.get("d", "k000") == b"still writing"
        monkeypatch.undo()
        _overwrite(store, 100, start=100)
        store.compact("d")
        store.compact("d")
        assert store.gc_status("d").collected_items > 0


@pytest.mark.parametrize("bad", [{1: "1000"}, {"1": 5}, {1: -1}, {True: 1}, [1, 2]])
def test_a_malformed_frontier_is_refused_by_name(solo: Store, bad: object) -> None:
    with pytest.raises(StoreError, match="frontier"):
        solo.set_gc_frontier("d", bad)  # type: ignore[arg-type]
    solo.compact("d")  # and nothing was stored that would break compaction


async def test_an_honest_diff_carrying_a_partly_known_run_is_taken(tmp_path: Path) -> None:
    """Found in review: a diff computed from an older state vector of ours carried a
    merged run of deleted entries we partly held; its written origin was collected,
    but the part we lack hangs from our own last item of the run, so it is no stale
    write. It was refused (and, on the sync path, the member's connection closed)."""
    config = StoreConfig(gc=GcMode.OFF, durability=Durability.BATCHED)
    with Store.open(tmp_path / "s", config) as store:
        store.create_document("d")
        y, y_root = _doc(7)
        y_root["k"] = b"y0"
        y_root["k"] = b"y1"
        x, x_root = _doc(5, y.get_update())
        store.apply_update("d", y.get_update())
        sv_before_x = store.state_vector("d")
        for i in range(3):
            sv = x.get_state()
            x_root["k"] = f"x{i}".encode()
            store.apply_update("d", x.get_update(sv))
        # A collector that had exactly this collected 7:1, 5:0-1 and re-hung 5:2 on 7:0.
        await store.amerge_gc(
            "d", Ranges({7: [(1, 2)], 5: [(0, 2)]}), Ranges({7: [(0, 1)]}), {7: 2, 5: 3}
        )
        for i in range(3, 7):
            x_root["k"] = f"x{i}".encode()
        store.apply_update("d", x.get_update(sv_before_x))  # one merged run 5:0-6
        assert store.get("d", "k") == b"x6"
