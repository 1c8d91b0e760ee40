"""The one document-name rule, and which documents are the node's own.

Every edge that takes a document name (the store, the admin API, sync frames, the
host ABI, manifests, ``/yjs``) checks it here, so the rule is written once:

- 1 to 64 characters from ``A-Z a-z 0-9 _ . -``;
- not made of dots only (``.``, ``..``: path components) and not ending in a dot
  (Windows drops a trailing dot, so ``a.`` and ``a`` would be one file there);
- not a Windows device name (CON, PRN, AUX, NUL, COM0-9, LPT0-9, any case), with
  or without an extension (``con.txt``): a document exported to a file, or a
  data directory copied to Windows, must not address a device.

Names starting with ``_`` are the node's own documents (``_modules``, membership
records): they replicate like any other, but only their own code paths write
them; user-facing write paths refuse them with :class:`SystemDocumentError`.
"""

from __future__ import annotations

import re

from edgestate.errors import InvalidDocumentNameError, SystemDocumentError

# 64: names are LMDB key prefixes (keys <= 511 bytes, with the 400-byte key limit
# and a separator) and travel in every sync frame.
MAX_DOC_NAME_CHARS = 64
# ECMA-262-compatible (no inline flags), so the schemas carry it verbatim.
DOC_NAME_PATTERN = (
    r"^(?!\.+$)(?!.*\.$)"
    r"(?!(?:[Cc][Oo][Nn]|[Pp][Rr][Nn]|[Aa][Uu][Xx]|[Nn][Uu][Ll]|[Cc][Oo][Mm][0-9]|[Ll][Pp][Tt][0-9])"
    r"(?:\.|$))"
    r"[A-Za-z0-9_.\-]{1,64}$"
)
DOC_NAME_RULE = (
    "1-64 characters from A-Z a-z 0-9 _ . -, not only dots, not ending in a dot, "
    "not a Windows device name (CON, PRN, AUX, NUL, COM0-9, LPT0-9, with or without "
    "an extension)"
)
_DOC_NAME = re.compile(DOC_NAME_PATTERN)
SYSTEM_PREFIX = "_"


def is_doc_name(name: object) -> bool:
    """Whether ``name`` follows the document-name rule (see the module docstring)."""
    return isinstance(name, str) and _DOC_NAME.fullmatch(name) is not None


def check_doc_name(name: object) -> str:
    """Return ``name`` if it is a valid document name, else raise
    :class:`InvalidDocumentNameError` saying the rule."""
    if not is_doc_name(name):
        shown = name[:80] if isinstance(name, str) else name
        raise InvalidDocumentNameError(f"invalid document name {shown!r}: use {DOC_NAME_RULE}")
    assert isinstance(name, str)
    return name


def is_system_document(name: str) -> bool:
    """Whether ``name`` is one of the node's own documents (``_`` prefix)."""
    return name.startswith(SYSTEM_PREFIX)


def check_user_writable(name: object) -> str:
    """A valid document name that user-facing write paths may write, else raise.

    :class:`SystemDocumentError` for the node's own (``_``) documents: they are
    written only through their own paths (deploy, membership).
    """
    doc = check_doc_name(name)
    if is_system_document(doc):
        raise SystemDocumentError(
            f"{doc!r} is one of the node's own documents (names starting with '_'); it is "
            "written only by the node itself (deploy and undeploy write _modules), "
            "reads are allowed"
        )
    return doc
