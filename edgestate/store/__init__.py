"""Durable state: named CRDT documents over one LMDB environment.

from edgestate.store import Store, Set, Incr
with Store.open("data") as store:
    store.create_document("counters")
    store.set("counters", "greeting", b"hello")
    store.incr("counters", "visits")
    store.batch([Set("counters", "a", b"1"), Incr("counters", "n", 5)])
"""

from edgestate.store.changes import ChangeStream
from edgestate.store.codec import decode_state_vector
from edgestate.store.gc import GcState, Ranges
from edgestate.store.store import Store
from edgestate.store.types import (
    ChangeEvent,
    Delete,
    DocumentInfo,
    Durability,
    GcMode,
    GcStatus,
    Incr,
    ScanPage,
    Set,
    StoreConfig,
    WriteOp,
)
from edgestate.store.values import describe_value, op_from_json, op_to_json

__all__ = [
    "ChangeEvent",
    "ChangeStream",
    "Delete",
    "DocumentInfo",
    "Durability",
    "GcMode",
    "GcState",
    "GcStatus",
    "Incr",
    "Ranges",
    "ScanPage",
    "Set",
    "Store",
    "StoreConfig",
    "WriteOp",
    "decode_state_vector",
    "describe_value",
    "op_from_json",
    "op_to_json",
]
