"""The Yjs v1 update encoding, read (and, for GC's rewrite, written) in one place.

An update is ``varuint(client blocks)``, then per block ``varuint(structs)
varuint(client) varuint(first clock)`` and its structs, then a delete set. A
struct starts with an info byte: the low five bits are its content ref, the high
three say whether an origin, a right origin and (with neither) a parent key follow.

pycrdt offers ``write_var_uint`` and an ``IdSet`` whose ranges cannot be read
back, and importing it costs ~100 ms (anyio, importlib.metadata), which a
read-only ``edgestate kv get`` must not pay; so the varuints here are our own.

pycrdt's ``apply_update`` decodes the v1 encoding only and *silently ignores* a
v2-encoded update (measured here), so a v2 update would be acknowledged and lost.
Every v2 update starts with a zero byte (the encoder's feature flag). In v1 a
leading zero means "no structs", and what follows must then be exactly one delete
set; anything else with a leading zero is v2 (or garbage) and is refused
(:func:`check_v1_update`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from edgestate.errors import InvalidUpdateError, UnsupportedUpdateEncodingError

# Struct content refs (the low five bits of the info byte).
GC = 0
DELETED = 1
JSON = 2
BINARY = 3
STRING = 4
EMBED = 5
FORMAT = 6
TYPE = 7
ANY = 8
DOC = 9
SKIP = 10

# The info byte's high bits: what precedes the content.
ORIGIN = 0x80
RIGHT_ORIGIN = 0x40
PARENT_SUB = 0x20  # the parent's key (a map entry), written only with no origins
_ORIGINS = ORIGIN | RIGHT_ORIGIN

# lib0 ``Any`` tags.
_ANY_UNDEFINED, _ANY_NULL, _ANY_INT, _ANY_FLOAT32, _ANY_FLOAT64 = 127, 126, 125, 124, 123
_ANY_BIGINT, _ANY_FALSE, _ANY_TRUE, _ANY_STRING = 122, 121, 120, 119
_ANY_OBJECT, _ANY_ARRAY, _ANY_BYTES = 118, 117, 116

Id = tuple[int, int]


def read_varuint(buf: bytes, pos: int) -> tuple[int, int]:
    """(value, next position) of the varuint at ``pos``."""
    value = 0
    shift = 0
    while True:
        if pos >= len(buf):
            raise IndexError("truncated varuint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise ValueError("varuint too long")


def write_varuint(out: bytearray, value: int) -> None:
    """Append ``value`` as a varuint."""
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def skip_varint(buf: bytes, pos: int) -> int:
    """The position after the varint at ``pos`` (not decoded, any length)."""
    while True:
        if pos >= len(buf):
            raise IndexError("truncated varint")
        byte = buf[pos]
        pos += 1
        if byte < 0x80:
            return pos


def skip_bytes(buf: bytes, pos: int) -> int:
    """Skip a varuint length and that many bytes (varString, varUint8Array)."""
    length, pos = read_varuint(buf, pos)
    if pos + length > len(buf):
        raise IndexError("truncated buffer")
    return pos + length


def read_string(buf: bytes, pos: int) -> tuple[str, int]:
    """(text, next position) of the varString at ``pos``."""
    end = skip_bytes(buf, pos)
    _, start = read_varuint(buf, pos)
    return buf[start:end].decode("utf-8", "surrogatepass"), end


def _read_id(buf: bytes, pos: int) -> tuple[Id, int]:
    # Inlined one-byte fast path: this runs for nearly every struct GC parses.
    client = buf[pos]
    if client < 0x80:
        pos += 1
    else:
        client, pos = read_varuint(buf, pos)
    clock = buf[pos]
    if clock < 0x80:
        pos += 1
    else:
        clock, pos = read_varuint(buf, pos)
    return (client, clock), pos


def skip_any(buf: bytes, pos: int, depth: int = 0) -> int:
    """Skip one lib0 ``Any`` value."""
    if depth > 64:
        raise ValueError("Any nested too deep")
    tag = buf[pos]
    pos += 1
    if tag in (_ANY_UNDEFINED, _ANY_NULL, _ANY_FALSE, _ANY_TRUE):
        return pos
    if tag == _ANY_INT:
        return skip_varint(buf, pos)
    if tag == _ANY_FLOAT32:
        return pos + 4
    if tag in (_ANY_FLOAT64, _ANY_BIGINT):
        return pos + 8
    if tag in (_ANY_STRING, _ANY_BYTES):
        return skip_bytes(buf, pos)
    if tag == _ANY_OBJECT:
        count, pos = read_varuint(buf, pos)
        for _ in range(count):
            pos = skip_bytes(buf, pos)
            pos = skip_any(buf, pos, depth + 1)
        return pos
    if tag == _ANY_ARRAY:
        count, pos = read_varuint(buf, pos)
        for _ in range(count):
            pos = skip_any(buf, pos, depth + 1)
        return pos
    raise ValueError(f"unknown Any tag {tag}")


def content_span(buf: bytes, ref: int, pos: int) -> tuple[int, int]:
    """(clock length, end) of an item's content of type ``ref`` starting at ``pos``.

    ``ValueError`` for a content type Yjs v1 does not have.
    """
    if ref == DELETED:  # a length
        return read_varuint(buf, pos)
    if ref == JSON:  # count, then strings
        count, pos = read_varuint(buf, pos)
        for _ in range(count):
            pos = skip_bytes(buf, pos)
        return count, pos
    if ref == STRING:  # its length counts UTF-16 code units, as in JavaScript
        text, end = read_string(buf, pos)
        return len(text.encode("utf-16-le", "surrogatepass")) // 2, end
    if ref in (BINARY, EMBED):
        return 1, skip_bytes(buf, pos)
    if ref == FORMAT:  # key and value
        return 1, skip_bytes(buf, skip_bytes(buf, pos))
    if ref == TYPE:  # its type ref, and a name for XmlElement / XmlHook
        type_ref, pos = read_varuint(buf, pos)
        return 1, (skip_bytes(buf, pos) if type_ref in (3, 5) else pos)
    if ref == ANY:  # count, then values
        count, pos = read_varuint(buf, pos)
        for _ in range(count):
            pos = skip_any(buf, pos)
        return count, pos
    if ref == DOC:  # guid and options
        return 1, skip_any(buf, skip_bytes(buf, pos))
    raise ValueError(f"unknown struct content {ref}")


@dataclass(slots=True)
class Struct:
    """One struct of an update, as :func:`walk` read it."""

    client: int
    clock: int
    length: int
    ref: int
    start: int  # byte span of the struct in the source update
    end: int
    content: int  # where its content bytes start
    origin: Id | None = None
    right: Id | None = None
    parent: str | Id | None = None  # written out only when the item has no origins
    sub: str | None = None
    # Filled by gc_rule.collect(): the struct holding the origin, and who hangs
    # off our end. Here so GC's millions of structs stay one slotted object each.
    up: Struct | None = None
    kids: int = 0
    kid: Struct | None = None
    branched: bool = False  # something hangs off an inner clock of this run


# Where a varint ends (at most 10 bytes, as read_varuint allows), found by the
# regex engine: client ids are 7-8 byte varints, and stepping over one byte by
# byte in Python was most of a one-struct update's walk (1.7 us of ~3.7).
# No match: truncated or too long, and read_varuint / skip_varint say which.
_VARINT_END = re.compile(rb"[\x80-\xff]{0,9}[\x00-\x7f]")

# Block headers' client ids, by their encoded bytes: a document's few writers
# recur in update after update. Cleared when full (a bound, not an LRU).
_CLIENT_IDS: dict[bytes, int] = {}
_MAX_CLIENT_IDS = 4096


def _block_client(buf: bytes, pos: int) -> tuple[int, int]:
    """(client id, next position) of a block header's client varuint."""
    match = _VARINT_END.match(buf, pos)
    if match is None:
        return read_varuint(buf, pos)  # raises as it should
    end = match.end()
    raw = buf[pos:end]
    client = _CLIENT_IDS.get(raw)
    if client is None:
        client = read_varuint(buf, pos)[0]
        if len(_CLIENT_IDS) >= _MAX_CLIENT_IDS:
            _CLIENT_IDS.clear()
        _CLIENT_IDS[raw] = client
    return client, end


_WALK_LOCALS = (
    GC, SKIP, ANY, DELETED, BINARY,
    ORIGIN, RIGHT_ORIGIN, PARENT_SUB, _ORIGINS, _ANY_BYTES, _ANY_STRING,
    Struct, content_span, read_varuint, skip_varint, _block_client, _VARINT_END.match,
)  # fmt: skip


def walk(
    update: bytes,
    structs: dict[int, list[Struct]] | None = None,
    ends: list[int] | None = None,
) -> tuple[list[tuple[int, int]], int]:
    """Walk every struct of a v1 update: its blocks' (client, first clock), and
    where its delete set starts.

    With ``ends``, each block's end clock (one past its last) is appended to it,
    in block order (how the store keeps a document's state vector up to date).
    With ``structs``, every struct is also read into it by client (GC's parse);
    without, they are only skipped (the gap check on the sync hot path, ~3x
    cheaper: no objects, no decoded ids or names). ``IndexError`` on truncated
    bytes, ``ValueError`` on content Yjs v1 does not have.
    """
    buf = update
    # Skipping, long varints are stepped over undecoded (their values, like the
    # clocks, are not needed), and a name's UTF-8 is not checked: as before the
    # walkers were one, the gap check refuses nothing the skip did not.
    keep = structs is not None
    exact = keep or ends is not None  # long lengths decoded, not stepped over
    size = len(buf)
    # The loop below runs once per struct (millions in a GC pass), so what it
    # names is bound to locals: a global lookup per use costs measurably, and
    # one unpacked tuple is the cheapest bind for the many one-struct updates.
    (
        gc_ref, skip_ref, any_ref, deleted_ref, binary_ref,
        has_origin, has_right, has_sub, origins, any_bytes, any_string,
        new, span, varuint, skip, block_client, varint_end,
    ) = _WALK_LOCALS  # fmt: skip
    origin: Id | None
    right: Id | None
    parent: str | Id | None
    sub: str | None
    count, pos = varuint(buf, 0)
    blocks: list[tuple[int, int]] = []
    # Origin client ids are long varints (replica ids reach 2**53) drawn from a
    # few values: matching their encoded bytes beats decoding them every time
    # (a varint is prefix-free, so a byte-wise match is the same number).
    known: list[tuple[bytes, int]] = []
    for _ in range(count):
        n, pos = varuint(buf, pos)
        client, pos = block_client(buf, pos)
        clock, pos = varuint(buf, pos)
        blocks.append((client, clock))
        append = structs.setdefault(client, []).append if structs is not None else None
        for _ in range(n):
            start = pos
            info = buf[pos]
            pos += 1
            ref = info & 0x1F
            if ref == gc_ref or ref == skip_ref:
                b = buf[pos]
                if b < 0x80:
                    length, pos = b, pos + 1
                elif exact:
                    length, pos = varuint(buf, pos)
                else:
                    length, pos = 0, skip(buf, pos)
                if append is not None:
                    append(new(client, clock, length, ref, start, pos, pos))
                clock += length
                continue
            if keep:
                origin = right = None
                parent = sub = None
            if info & has_origin:
                for raw, value in known:
                    if buf.startswith(raw, pos):
                        pos += len(raw)
                        other = value
                        break
                else:
                    match = varint_end(buf, pos)
                    end = match.end() if match is not None else skip(buf, pos)
                    other = varuint(buf, pos)[0] if keep else 0
                    known.insert(0, (buf[pos:end], other))
                    del known[8:]
                    pos = end
                b = buf[pos]
                if b < 0x80:
                    pos += 1
                    if keep:
                        origin = (other, b)
                elif keep:
                    at, pos = varuint(buf, pos)
                    origin = (other, at)
                else:
                    pos = skip(buf, pos)
            if info & has_right:
                if keep:
                    right, pos = _read_id(buf, pos)
                else:
                    match = varint_end(buf, pos)
                    pos = skip(buf, match.end() if match is not None else skip(buf, pos))
            if not info & origins:  # no origins: the parent is written out
                named, pos = varuint(buf, pos)
                if not keep:
                    pos = skip_bytes(buf, pos) if named else skip(buf, skip(buf, pos))
                    if info & has_sub:
                        pos = skip_bytes(buf, pos)
                else:
                    if named:
                        parent, pos = read_string(buf, pos)
                    else:
                        parent, pos = _read_id(buf, pos)
                    if info & has_sub:
                        sub, pos = read_string(buf, pos)
            content = pos
            if (
                ref == any_ref
                and buf[pos] == 1
                and buf[pos + 1] in (any_bytes, any_string)
                and buf[pos + 2] < 0x80
                and pos + 3 + buf[pos + 2] <= size
            ):
                # One Uint8Array or string under 128 bytes: the common map value.
                length, pos = 1, pos + 3 + buf[pos + 2]
            elif ref == deleted_ref:
                b = buf[pos]
                if b < 0x80:
                    length, pos = b, pos + 1
                elif exact:
                    length, pos = varuint(buf, pos)
                else:
                    length, pos = 0, skip(buf, pos)
            elif ref == binary_ref:
                length, pos = 1, skip_bytes(buf, pos)
            else:
                length, pos = span(buf, ref, pos)
            if append is not None:
                append(
                    new(client, clock, length, ref, start, pos, content, origin, right, parent, sub)
                )
            clock += length
        if ends is not None:
            ends.append(clock)
    return blocks, pos


def read_delete_set(update: bytes, pos: int) -> dict[int, list[tuple[int, int]]]:
    """The delete set that ends a v1 update, from ``pos``: client -> [start, end) runs,
    as written (not sorted or merged)."""
    ds: dict[int, list[tuple[int, int]]] = {}
    count, pos = read_varuint(update, pos)
    for _ in range(count):
        client, pos = read_varuint(update, pos)
        n, pos = read_varuint(update, pos)
        runs = ds.setdefault(client, [])
        for _ in range(n):
            clock, pos = read_varuint(update, pos)
            length, pos = read_varuint(update, pos)
            runs.append((clock, clock + length))
    return ds


def _is_v1_delete_set_only(buf: bytes) -> bool:
    """True if ``buf`` is a v1 update with no structs and a well-formed delete set."""
    try:
        pos = 1  # the zero struct-count byte
        clients, pos = read_varuint(buf, pos)
        for _ in range(clients):
            _, pos = read_varuint(buf, pos)  # client id
            ranges, pos = read_varuint(buf, pos)
            for _ in range(ranges):
                _, pos = read_varuint(buf, pos)  # clock
                _, pos = read_varuint(buf, pos)  # length
    except (IndexError, ValueError):
        return False
    return pos == len(buf)


def check_v1_update(update: bytes) -> None:
    """Raise unless ``update`` can be a Yjs v1 update (full decoding is pycrdt's job)."""
    if not isinstance(update, bytes | bytearray | memoryview):
        raise InvalidUpdateError(f"an update is bytes, got {type(update).__name__}")
    if len(update) == 0:
        raise InvalidUpdateError("empty update: a Yjs v1 update is at least 2 bytes")
    if update[0] == 0 and not _is_v1_delete_set_only(bytes(update)):
        raise UnsupportedUpdateEncodingError(
            "this looks like a Yjs v2-encoded update; edgestate accepts the v1 encoding only "
            "(Y.encodeStateAsUpdate / Y.mergeUpdates, not their *V2 variants)"
        )


def decode_state_vector(sv: bytes) -> dict[int, int]:
    """client -> next expected clock, from a v1 state vector."""
    out: dict[int, int] = {}
    count, pos = read_varuint(sv, 0)
    for _ in range(count):
        client, pos = read_varuint(sv, pos)
        clock, pos = read_varuint(sv, pos)
        out[client] = clock
    return out
