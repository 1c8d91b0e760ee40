"""Binding the ABI to wasmtime: the host-call trampolines and the current invocation.

:func:`define_host_functions` defines every function of :data:`~edgestate.host.abi.FUNCTIONS`
once per engine, as an unchecked callback that reads its arguments from the raw
slots wasmtime hands it and calls the same-named :class:`HostContext` method of
the invocation :func:`bind` made current on this thread. The callback is where
the ABI's two kinds of failure part: a refused call (and a store error the
guest's arguments caused) becomes a negative status; a guest bug, a store
failure or a host bug traps, with the exception kept for the runtime to report.
"""

from __future__ import annotations

import struct
import threading
import time
from collections.abc import Callable
from typing import Any, Final

from edgestate.errors import (
    GuestFault,
    HostBugError,
    HostCallRefused,
    InvalidCursorError,
    InvalidKeyError,
    InvocationError,
    StoreError,
    UnknownDocumentError,
    ValueTooLargeError,
    WrongTypeError,
)
from edgestate.host.abi import FUNCTIONS, IMPORT_MODULE, ErrorCode, HostContext, HostFunction
from edgestate.host.budget import budget_spent, deadline_error
from edgestate.host.memory import ADDRESS_SPACE, LinkerFunctions, make_trap, slot_struct


class _Current(threading.local):
    context: HostContext | None = None  # the class default covers fresh threads


_current = _Current()


def bind(context: HostContext | None) -> None:
    """Make ``context`` the target of host calls made on this thread.

    wasm runs on the calling thread, so a thread-local finds the right
    invocation for a host function defined once on a shared linker.
    """
    _current.context = context


def bound() -> HostContext | None:
    """The invocation :func:`bind` made current on this thread, if any."""
    return _current.context


# Store errors a guest's arguments can cause, as the status it receives. Any
# other store error (a closed store, a failing disk) is the node's, and traps.
_STORE_ERROR_CODES: Final = (
    (InvalidKeyError, ErrorCode.INVALID_KEY),
    (UnknownDocumentError, ErrorCode.UNKNOWN_DOCUMENT),
    (WrongTypeError, ErrorCode.WRONG_TYPE),
    (InvalidCursorError, ErrorCode.INVALID_CURSOR),
    (ValueTooLargeError, ErrorCode.VALUE_TOO_LARGE),
)


def _store_error_code(exc: StoreError) -> ErrorCode | None:
    for kind, code in _STORE_ERROR_CODES:
        if isinstance(exc, kind):
            return code
    return None


def _make_callback(function: HostFunction) -> Callable[[Any, Any, int, int], int]:
    method: Callable[..., Any] = getattr(HostContext, function.name)
    layout = slot_struct(
        # Handles, pointers and lengths are read unsigned: a "negative" one is
        # simply out of range. Only the log level is a signed number.
        ["i64" if t == "i64" else ("i32s" if n == "level" else "i32") for n, t in function.params]
    )
    result: struct.Struct | None = (
        slot_struct(["i32s" if function.results[0] == "i32" else "i64"])
        if function.results
        else None
    )
    space = ADDRESS_SPACE
    now = time.monotonic_ns

    def callback(_env: Any, _caller: Any, args: int, _nargs: int) -> int:
        context = _current.context
        if context is None:  # called outside Sandbox.run: nothing to act on
            return make_trap(
                f"edgestate host function {function.name} called outside an invocation"
            )
        # Epoch interruption only fires in wasm code, so a guest that spends its
        # time in host calls is stopped here, on entry, by one clock read against
        # a deadline computed once per invocation (~0.1-0.2 us). Each host call's own
        # cost is bounded (see HostLimits), so one call cannot overrun by much.
        # Past it, host.budget decides (a starved guest may run on).
        clock = now()
        if clock > context.deadline_ns and budget_spent(context, clock):
            return _deadline_trap(context, function.name, clock)
        context.host_calls += 1
        try:
            value = method(context, *layout.unpack_from(space, args))
        except HostCallRefused as status:
            value = status.status
        except GuestFault as fault:
            context.fault = fault.error
            return make_trap(str(fault.error))
        except StoreError as exc:
            code = _store_error_code(exc)
            if code is None:
                context.fault = InvocationError(f"the store failed during {function.name}: {exc}")
                context.fault.__cause__ = exc
                return make_trap(f"edgestate host function {function.name} failed")
            value = code
        except BaseException as exc:  # a host bug must trap the guest, never the node
            context.fault = HostBugError(f"host function {function.name} failed: {exc!r}")
            context.fault.__cause__ = exc
            return make_trap(f"edgestate host function {function.name} failed")
        if result is not None:
            result.pack_into(space, args, value)
        return 0

    return callback


def _deadline_trap(context: HostContext, name: str, now_ns: int) -> int:
    context.fault = deadline_error(context, now_ns, f"on entry to host function {name}")
    return make_trap(f"edgestate host function {name}: wall-time budget exceeded")


def define_host_functions(linker: Any) -> LinkerFunctions:
    """Define every ABI function on ``linker`` (once per engine)."""
    functions = LinkerFunctions(linker)
    for function in FUNCTIONS:
        functions.define(
            IMPORT_MODULE,
            function.name,
            [t for _, t in function.params],
            list(function.results),
            _make_callback(function),
        )
    return functions
