"""Durable state: named CRDT documents over one LMDB environment.

from edgestate.store import Store, Set, Incr
with Store.open("data") as store:
    store.create_document("counters")
    store.set("counters", "greeting", b"hello")
    store.incr("counters", "visits")
    store.batch([Set("counters", "a", b"1"), Incr("counters", "n", 5)])

Importing this package loads neither pycrdt nor asyncio: a read-only store never
needs them (``edgestate kv get``). ``ChangeStream`` is imported on first access.
"""

from typing import TYPE_CHECKING, Any

from edgestate.store.backup import backup_store
from edgestate.store.codec import decode_state_vector
from edgestate.store.gc import GcRecord, GcState, Ranges
from edgestate.store.integrity import check_data_file
from edgestate.store.names import (
    DOC_NAME_PATTERN,
    DOC_NAME_RULE,
    MAX_DOC_NAME_CHARS,
    check_doc_name,
    check_user_writable,
    is_doc_name,
    is_system_document,
)
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
from edgestate.store.verify import verify_in_child

if TYPE_CHECKING:
    from edgestate.store.stream import ChangeStream

__all__ = [
    "DOC_NAME_PATTERN",
    "DOC_NAME_RULE",
    "MAX_DOC_NAME_CHARS",
    "ChangeEvent",
    "ChangeStream",
    "Delete",
    "DocumentInfo",
    "Durability",
    "GcMode",
    "GcRecord",
    "GcState",
    "GcStatus",
    "Incr",
    "Ranges",
    "ScanPage",
    "Set",
    "Store",
    "StoreConfig",
    "WriteOp",
    "backup_store",
    "check_data_file",
    "check_doc_name",
    "check_user_writable",
    "decode_state_vector",
    "describe_value",
    "is_doc_name",
    "is_system_document",
    "op_from_json",
    "op_to_json",
    "verify_in_child",
]


def __getattr__(name: str) -> Any:
    # ChangeStream needs asyncio (~50 ms to import): loaded when first named.
    if name == "ChangeStream":
        from edgestate.store.stream import ChangeStream

        return ChangeStream
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
