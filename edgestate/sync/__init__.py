"""Peer sync: nodes replicate their CRDT documents to each other.

    from edgestate.sync import SyncConfig, SyncDaemon, TLSFiles
    async with SyncDaemon(store, SyncConfig(tls=tls.files_for(dir, "edge-1"))) as daemon:
        daemon.peers()      # who, connection state, last sync, lag

Modules: ``frames`` (wire protocol, see schemas/sync-protocol.schema.json),
``tls`` (cluster CA, node certificates, mutual-TLS contexts), ``peers`` (peer
table, backoff), ``discovery`` (static list, mDNS), ``daemon`` (gossip,
anti-entropy), ``yjs`` (the y-websocket endpoint). Imports point one way:
sync -> store.
"""

from edgestate.sync.config import Limits, SyncConfig, TLSFiles
from edgestate.sync.daemon import SyncDaemon, SyncStats
from edgestate.sync.peers import PeerState, PeerStatus
from edgestate.sync.yjs import YjsEndpoint

__all__ = [
    "Limits",
    "PeerState",
    "PeerStatus",
    "SyncConfig",
    "SyncDaemon",
    "SyncStats",
    "TLSFiles",
    "YjsEndpoint",
]
