"""NATS credentials are not membership: what arrives must come from our cluster."""

from __future__ import annotations

import shutil
from pathlib import Path

import nats
import pytest

from edgestate.store import Set
from edgestate.sync.nats_seal import Sealer
from tests.sync.conftest import Nodes, eventually
from tests.sync.nats_sites import (
    NATS_PASSWORD,
    NATS_USER,
    intruder_link,
    nats_servers,
    ready,
    start_site,
    value,
)

pytestmark = pytest.mark.skipif(
    shutil.which("nats-server") is None, reason="nats-server not installed (scripts/bootstrap)"
)
DOC = "shared"


async def test_a_node_of_another_cluster_with_nats_credentials_is_refused(
    nodes: Nodes, tmp_path: Path
) -> None:
    async with nats_servers(nodes, tmp_path / "nats") as servers:
        url = servers[0].url
        (ours,) = await start_site(nodes, tmp_path, [url], size=1)
        (writer,) = await start_site(nodes, tmp_path, [url], size=1)
        assert ours.daemon.nats is not None and writer.daemon.nats is not None
        await ready([ours, writer])

        # Another cluster's node, aiming at our subjects, with valid NATS credentials.
        async with intruder_link(tmp_path, url, ours.daemon.cluster_id) as (intruder, store):
            store.create_document(DOC)
            store.batch([Set(DOC, "evil", b"1")])
            await eventually(lambda: intruder.stats.updates_published >= 1, 30)
            # A member's write published after it: once it is here, the intruder's
            # message has been through our consumer.
            writer.store.create_document(DOC)
            writer.store.batch([Set(DOC, "good", b"1")])
            await eventually(lambda: value(ours.store, DOC, "good") == b"1", 30)
            assert value(ours.store, DOC, "evil") is None
            assert ours.daemon.nats.stats.refused >= 1
            (reason,) = ours.daemon.nats.stats.refused_senders.values()
            assert "not issued by our cluster CA" in reason
            # Our member's update did reach the intruder (it reads the stream), but
            # nothing of the intruder reached us or our other member.
            assert value(writer.store, DOC, "evil") is None


async def test_forged_and_moved_messages_are_refused(nodes: Nodes, tmp_path: Path) -> None:
    async with nats_servers(nodes, tmp_path / "nats") as servers:
        url = servers[0].url
        (ours,) = await start_site(nodes, tmp_path, [url], size=1)
        (member,) = await start_site(nodes, tmp_path, [url], size=1)
        assert ours.daemon.nats is not None and member.daemon.nats is not None
        await ready([ours, member])
        link = member.daemon.nats
        nc = await nats.connect(url, user=NATS_USER, password=NATS_PASSWORD)
        try:
            js = nc.jetstream()
            # A message a member really sealed, for document "a", replayed on "b".
            update = _update_setting("k")
            frame_bytes = _push("a", update)
            sealed = Sealer(member.daemon.config.tls, member.daemon.node_id).seal(
                link.subjects.doc("a"), frame_bytes
            )
            await js.publish(link.subjects.doc("b"), sealed)
            # The member's fingerprint with a signature that is not its own.
            forged = bytearray(sealed)
            forged[-len(frame_bytes) - 5] ^= 0x55  # inside the signature
            await js.publish(link.subjects.doc("a"), bytes(forged))
            # Unsigned, as an insecure node would send.
            plain = Sealer(None, "dev-node").seal(link.subjects.doc("a"), frame_bytes)
            await js.publish(link.subjects.doc("a"), plain)
            # Not an envelope at all.
            await js.publish(link.subjects.doc("a"), b"\xc1garbage")
            # Then a real write: once here, everything above went through.
            member.store.create_document("c")
            member.store.batch([Set("c", "k", b"1")])
            await eventually(lambda: value(ours.store, "c", "k") == b"1", 30)
            assert not ours.store.has_document("b")
            assert not ours.store.has_document("a")
            stats = ours.daemon.nats.stats
            assert stats.refused >= 3
            assert stats.malformed >= 1
        finally:
            await nc.close()


def _update_setting(key: str) -> bytes:
    """A real Yjs update (from a throwaway store) that sets ``key``."""
    from pycrdt import Doc, Map

    doc = Doc()
    doc["kv"] = kv = Map()
    kv[key] = "v"
    return doc.get_update()


def _push(doc: str, update: bytes) -> bytes:
    from edgestate.sync import frames

    return frames.encode(frames.Push(((doc, update),)))
