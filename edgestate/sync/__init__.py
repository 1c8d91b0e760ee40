"""Peer sync: nodes replicate their CRDT documents to each other.

    from edgestate.sync import SyncConfig, SyncDaemon, TLSFiles
    async with SyncDaemon(store, SyncConfig(tls=tls.files_for(dir, "edge-1"))) as daemon:
        daemon.peers()      # who, connection state, last sync, lag

Modules: ``frames`` (wire protocol, see schemas/sync-protocol.schema.json),
``tls`` (cluster CA, node certificates, mutual-TLS contexts), ``channel`` (the
transport seam and an in-memory pair), ``websocket`` (the aiohttp channel,
server and dialer), ``connection`` (one peer connection), ``peers`` (peer
table, backoff), ``discovery`` (static list, mDNS), ``gossip`` (updates, state
vectors, anti-entropy), ``membership`` (garbage-collection reports and
records), ``daemon`` (composition and the public API), ``yjs`` (the
y-websocket endpoint). Imports point one way: sync -> store.
"""

from edgestate.sync.channel import Channel, memory_channel_pair
from edgestate.sync.config import Limits, SyncConfig, TLSFiles
from edgestate.sync.daemon import SyncDaemon
from edgestate.sync.diagnosis import PeerView, missing
from edgestate.sync.peers import PeerState, PeerStatus
from edgestate.sync.stats import SyncStats
from edgestate.sync.yjs import YjsEndpoint

__all__ = [
    "Channel",
    "Limits",
    "PeerState",
    "PeerStatus",
    "PeerView",
    "SyncConfig",
    "SyncDaemon",
    "SyncStats",
    "TLSFiles",
    "YjsEndpoint",
    "memory_channel_pair",
    "missing",
]
