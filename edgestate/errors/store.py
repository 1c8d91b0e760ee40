"""Errors of the durable state layer (``edgestate.store``).

Part of the tree in ``edgestate.errors`` (its docstring); import from there."""

from __future__ import annotations

from edgestate.errors.base import EdgestateError


class StoreError(EdgestateError):
    """A failure of the durable state layer."""

    code = "store_error"


class InvalidKeyError(StoreError):
    """A key that is not a non-empty UTF-8 string within the size limit."""

    code = "invalid_key"


class ValueTooLargeError(StoreError):
    """A value over the store's configured size limit."""

    code = "value_too_large"


class InvalidDocumentNameError(StoreError):
    """A document name outside the allowed alphabet or length."""

    code = "invalid_document_name"


class SystemDocumentError(StoreError):
    """A user-facing write (admin API, CLI, ``/yjs``, a manifest grant) to one of the
    node's own documents (``_`` prefix); only the node's own paths write those."""

    code = "system_document"


class UnknownDocumentError(StoreError):
    """A document that was never created in this store."""

    code = "unknown_document"


class WrongTypeError(StoreError):
    """An operation that does not fit the stored value's type (counter vs bytes)."""

    code = "wrong_type"


class InvalidUpdateError(StoreError):
    """CRDT update bytes that are corrupt or not a Yjs update at all."""

    code = "invalid_update"


class UnsupportedUpdateEncodingError(InvalidUpdateError):
    """A Yjs v2-encoded update; edgestate speaks the v1 encoding only."""

    code = "unsupported_update_encoding"


class StaleReplicaError(InvalidUpdateError):
    """An update or state vector from a replica behind history this node collected.

    Only a replica that missed the cluster's stable frontier (a forgotten member,
    a Yjs client that was offline through it) can send one; it must drop its copy
    of the document and sync afresh.
    """

    code = "stale_replica"


class InvalidCursorError(StoreError):
    """A scan cursor that this store did not issue (or that was tampered with)."""

    code = "invalid_cursor"


class FormatVersionError(StoreError):
    """A data directory written by an incompatible on-disk format version."""

    code = "format_version"


class StoreLockedError(StoreError):
    """Another process holds the data directory open for writing."""

    code = "store_locked"


class StoreMissingError(StoreError):
    """A data directory that holds a node's files but whose store is missing or empty.

    Starting afresh there would silently drop every acknowledged write; it takes an
    explicit ``edgestate node --new-store``.
    """

    code = "store_missing"


class StoreCorruptError(StoreError):
    """A store file that is damaged: truncated, bad meta or B-tree pages, or entries
    the store's decoders refuse. Restore from a backup (README, backup and restore)."""

    code = "store_corrupt"


class StoreClosedError(StoreError):
    """An operation on a store that was already closed."""

    code = "store_closed"


class ReadOnlyStoreError(StoreError):
    """A write attempted through a store opened read-only."""

    code = "read_only"
