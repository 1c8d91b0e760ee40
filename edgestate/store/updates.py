"""Checks on Yjs update bytes before they reach pycrdt.

pycrdt's ``apply_update`` decodes the v1 encoding only and *silently ignores* a
v2-encoded update (measured here), so a v2 update would be acknowledged and lost.
Every v2 update starts with a zero byte (the encoder's feature flag). In v1 a
leading zero means "no structs", and what follows must then be exactly one delete
set; anything else with a leading zero is v2 (or garbage) and is refused.
"""

from __future__ import annotations

from edgestate.errors import InvalidUpdateError, UnsupportedUpdateEncodingError


def _read_varuint(buf: bytes, pos: int) -> tuple[int, int]:
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


def _is_v1_delete_set_only(buf: bytes) -> bool:
    """True if ``buf`` is a v1 update with no structs and a well-formed delete set."""
    try:
        pos = 1  # the zero struct-count byte
        clients, pos = _read_varuint(buf, pos)
        for _ in range(clients):
            _, pos = _read_varuint(buf, pos)  # client id
            ranges, pos = _read_varuint(buf, pos)
            for _ in range(ranges):
                _, pos = _read_varuint(buf, pos)  # clock
                _, pos = _read_varuint(buf, pos)  # length
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


def first_block(update: bytes) -> tuple[int, int, int] | None:
    """(client blocks, first client, its start clock) from a v1 update's header.

    Only the header is read: skipping a block's structs would take a full decoder.
    Returns None for an update without structs.
    """
    try:
        blocks, pos = _read_varuint(update, 0)
        if blocks == 0:
            return None
        _, pos = _read_varuint(update, pos)  # struct count
        client, pos = _read_varuint(update, pos)
        clock, pos = _read_varuint(update, pos)
    except (IndexError, ValueError) as exc:
        raise InvalidUpdateError(f"cannot decode update header: {exc}") from exc
    return blocks, client, clock


def decode_state_vector(sv: bytes) -> dict[int, int]:
    """client -> next expected clock, from a v1 state vector."""
    out: dict[int, int] = {}
    count, pos = _read_varuint(sv, 0)
    for _ in range(count):
        client, pos = _read_varuint(sv, pos)
        clock, pos = _read_varuint(sv, pos)
        out[client] = clock
    return out
