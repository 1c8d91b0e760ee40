"""Decoding every entry of a store with its own decoders (``inspect verify``).

Given the raw rows of each table, it checks that each decodes the way the store
would read it, and that the materialized ``kv`` rows agree with the documents
rebuilt from their snapshot and log. Problems come back as sentences naming the
table and entry.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator

from edgestate.errors import EdgestateError
from edgestate.store import keys as K
from edgestate.store.codec import check_v1_update
from edgestate.store.crdt import CrdtDocument
from edgestate.store.env import DocMeta
from edgestate.store.gc import GcState
from edgestate.store.names import is_doc_name

Rows = list[tuple[bytes, bytes]]
_SEQ = struct.Struct(">Q")
_TAGS = (K.TAG_BYTES, K.TAG_COUNTER, K.TAG_JSON)


def _split(key: bytes) -> tuple[str, bytes] | None:
    doc, sep, rest = key.partition(K.SEP)
    if not sep:
        return None
    try:
        return doc.decode(), rest
    except UnicodeDecodeError:
        return None


def _apply(crdt: CrdtDocument, update: bytes) -> str | None:
    """None if ``update`` decodes and applies, else why not."""
    try:
        check_v1_update(update)
        crdt.load(None, [update])
    except (EdgestateError, ValueError) as exc:
        return str(exc)
    except BaseException as exc:  # pycrdt's Rust panics are BaseExceptions
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise
        return f"{type(exc).__name__}: {exc}"
    return None


def check_rows(rows: dict[str, Rows]) -> Iterator[str]:
    """Every problem found decoding ``rows`` (table name -> its (key, value) rows)."""
    metas: dict[str, DocMeta] = {}
    for key, value in rows.get("docs", []):
        name = key.decode(errors="replace")
        if not is_doc_name(name):
            yield f"docs: {name!r} is not a valid document name"
        try:
            metas[name] = DocMeta.unpack(value)
        except Exception as exc:  # msgpack raises several kinds
            yield f"docs: the record of {name!r} does not decode: {exc}"
    yield from _meta(rows.get("meta", []))
    crdts = {name: CrdtDocument(name, 1) for name in metas}
    broken: set[str] = set()  # documents whose values cannot be checked
    for key, value in rows.get("snap", []):
        name = key.decode(errors="replace")
        if name not in crdts:
            yield f"snap: snapshot of {name!r}, a document the docs table does not have"
        elif (why := _apply(crdts[name], value)) is not None:
            broken.add(name)
            yield f"snap: the snapshot of {name!r} does not decode: {why}"
    for key, value in rows.get("log", []):
        parts = _split(key)
        if parts is None or len(parts[1]) != _SEQ.size:
            yield f"log: malformed key {key[:80]!r}"
            continue
        name, (seq,) = parts[0], _SEQ.unpack(parts[1])
        meta = metas.get(name)
        if meta is None:
            yield f"log: entry {seq} of {name!r}, a document the docs table does not have"
            continue
        if not meta.snap_seq <= seq < meta.seq:
            yield f"log: entry {seq} of {name!r} outside its range {meta.snap_seq}..{meta.seq - 1}"
        if (why := _apply(crdts[name], value)) is not None:
            broken.add(name)
            yield f"log: entry {seq} of {name!r} does not decode: {why}"
    for key, value in rows.get("pending", []):
        parts = _split(key)
        if parts is None or parts[0] not in metas:
            yield f"pending: entry {key[:80]!r} is not of a known document"
            continue
        if (why := _apply(CrdtDocument(parts[0], 1), value)) is not None:
            yield f"pending: a held update of {parts[0]!r} does not decode: {why}"
    yield from _kv(rows.get("kv", []), crdts, broken)


def _meta(rows: Rows) -> Iterator[str]:
    seen = {k for k, _ in rows}
    for required in (b"format", b"replica"):
        if required not in seen:
            yield f"meta: the {required.decode()} record is missing"
    for key, value in rows:
        if key in (b"format", b"replica"):
            if not value.isdigit():
                yield f"meta: the {key.decode()} record {value[:40]!r} is not a number"
        elif key.startswith(K.GC_RECORD_PREFIX):
            try:
                GcState.unpack(value)
            except Exception as exc:
                yield f"meta: the garbage-collection record {key!r} does not decode: {exc}"


def _kv(rows: Rows, crdts: dict[str, CrdtDocument], broken: set[str]) -> Iterator[str]:
    for key, value in rows:
        parts = _split(key)
        if parts is None:
            yield f"kv: malformed key {key[:80]!r}"
            continue
        name, raw_key = parts
        crdt = crdts.get(name)
        try:
            text_key = raw_key.decode()
        except UnicodeDecodeError:
            yield f"kv: a key of {name!r} is not UTF-8: {raw_key[:80]!r}"
            continue
        where = f"kv: {name}/{text_key[:80]}"
        tag = value[:1]
        if crdt is None:
            yield f"{where}: a document the docs table does not have"
        elif tag not in _TAGS:
            yield f"{where}: unknown value tag {tag!r}"
        elif tag == K.TAG_COUNTER and len(value) != 9:
            yield f"{where}: a counter of {len(value) - 1} bytes (8 expected)"
        elif tag == K.TAG_JSON and not _is_json(value[1:]):
            yield f"{where}: a JSON value that does not parse"
        elif name not in broken and crdt.value(text_key) != value:
            yield f"{where}: differs from the document's own value"


def _is_json(raw: bytes) -> bool:
    try:
        json.loads(raw)
    except ValueError:
        return False
    return True
