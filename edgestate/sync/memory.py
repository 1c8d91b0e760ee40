"""Giving memory back to the system after a connection that held big frames.

glibc keeps freed heap memory for reuse, and after freeing one large mmap'd
block raises its mmap threshold, so later big frames come from the heap and
stay resident once freed (found in hardening: 1.76 GB kept after three 400 MB
frames). ``malloc_trim`` returns the free pages; elsewhere it is a no-op.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc

# A connection that received at least this many bytes in one frame trims when it
# ends: trimming walks the heap (milliseconds), pointless after small frames.
TRIM_AFTER_BYTES = 4 << 20


@functools.cache
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        libc.malloc_trim  # noqa: B018 - only glibc has it
    except (OSError, AttributeError):
        return None
    return libc


def give_back() -> None:
    """Return freed heap memory to the operating system, where the C library can."""
    # A frame's bytes can sit in a reference cycle (an exception's traceback
    # holding the frame that read them) until a full collection.
    gc.collect()
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)
