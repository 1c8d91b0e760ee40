"""Stopping a guest in wasm code at its wall-time budget: the epoch deadline callback.

Epoch interruption counts ticks, not time: a deadline of N ticks fires anywhere
in the tick it lands in, early when a late ticker catches up several ticks at
once. So each store's epoch deadline only says when to *look*: wasmtime then
calls :func:`_on_epoch` on the guest's own thread, which reads the clock and
applies the one budget rule (:mod:`edgestate.host.budget`, also checked on
entry to every host function). Before the deadline it sets the next look at the
tick the deadline falls in; past it, it stops the guest, unless the guest was
starved, when it looks again next tick. A spinning guest therefore ends at the
first tick past its budget: at most one tick (``RuntimeConfig.epoch_tick_ms``)
late plus however late the ticker thread wakes, never early.

Cost: one ctypes call per invocation to set the callback, and a Python call
only when a deadline epoch comes (at most twice for a guest that is not
starved; a guest that ends within its budget never sees one).
"""

from __future__ import annotations

import ctypes
import time
from typing import Any

from wasmtime import _bindings as _raw
from wasmtime import _ffi as ffi

from edgestate.errors import HostBugError
from edgestate.host.binding import bound
from edgestate.host.budget import budget_spent, deadline_error
from edgestate.host.memory import gil_holding

_UPDATE_CONTINUE = 0  # WASMTIME_UPDATE_DEADLINE_CONTINUE: keep running, deadline moved
_Callback = ctypes.CFUNCTYPE(
    ctypes.c_size_t,  # a wasmtime_error_t* (0: carry on); ctypes cannot return a pointer
    ctypes.POINTER(ffi.wasmtime_context_t),
    ctypes.c_void_p,
    ctypes.POINTER(ctypes.c_uint64),
    ctypes.POINTER(ffi.wasmtime_update_deadline_kind_t),
)
_NO_FINALIZER = ctypes.cast(0, ctypes.CFUNCTYPE(None, ctypes.c_void_p))
_set_callback = gil_holding(_raw._wasmtime_store_epoch_deadline_callback)
_error_new = _raw._wasmtime_error_new
_monotonic = time.monotonic_ns


def _stop(message: bytes) -> int:
    # Owned by wasmtime from here: the failed call returns it, and the sandbox
    # reads (and frees) it like any other error.
    error = _error_new(message)
    return ctypes.cast(error, ctypes.c_void_p).value or 0


class EpochBudget:
    """The epoch deadline callback of one runtime (one epoch tick length)."""

    def __init__(self, tick_ms: float) -> None:
        self._tick_ns = max(1, int(tick_ms * 1_000_000))
        # Kept referenced for as long as any store may call it.
        self._callback = _Callback(self._on_epoch)

    def ticks_until(self, deadline_ns: int, now_ns: int) -> int:
        """Epoch ticks from ``now_ns`` to the tick ``deadline_ns`` falls in (at least
        one): where the next look at a guest's budget goes."""
        return max(1, -(-(deadline_ns - now_ns) // self._tick_ns))

    def install(self, raw_store: Any) -> None:
        """Have the budget rule decide at each epoch deadline of ``raw_store``."""
        _set_callback(raw_store, self._callback, None, _NO_FINALIZER)

    def _on_epoch(self, _context: Any, _data: Any, delta: Any, kind: Any) -> int:
        # An exception must not escape: ctypes would print it and return 0,
        # which lets the guest run on with whatever deadline was left.
        context = bound()
        try:
            if context is None:
                return _stop(b"edgestate: an epoch deadline outside any invocation")
            now = _monotonic()
            if context.deadline_ns > now:
                ticks = self.ticks_until(context.deadline_ns, now)
            elif budget_spent(context, now):
                context.fault = deadline_error(context, now, "in wasm code")
                return _stop(b"edgestate: wall-time budget exceeded")
            else:
                ticks = 1  # starved: look again next tick (host.budget)
            delta[0] = ticks
            kind[0] = _UPDATE_CONTINUE
            return 0
        except BaseException as exc:
            if context is not None:
                context.fault = HostBugError(f"the epoch deadline callback failed: {exc!r}")
                context.fault.__cause__ = exc
            return _stop(b"edgestate: the epoch deadline callback failed")
