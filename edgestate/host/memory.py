"""The fast route between Python and wasm: raw host functions and guest memory.

wasmtime-py's ordinary API re-reads function types and converts every argument
in pure Python (7-24 us per call into wasm, ~8 us per call out of it, 2-6 us per
``Memory.read``). This module is the one place that uses the raw bindings
instead, so the rest of the runtime never touches a pointer:

* host functions are defined *unchecked* on the linker; wasmtime hands us the
  address of an array of 16-byte ``wasmtime_val_raw_t`` slots that holds the
  arguments on entry and receives the results on return;
* guest memory is read and written through one memoryview of the process
  address space, at ``base + offset``. That is sound only because the engine is
  built with ``memory_may_move`` off (the base never changes during an
  invocation) and because every guest range is bounds-checked here, against the
  memory's current size, before it is touched.

Only this module and the host-call trampolines of :mod:`edgestate.host.binding`
(which read arguments at the address wasmtime hands them) index
:data:`ADDRESS_SPACE`; guest memory is reached only through :class:`GuestMemory`.
"""

from __future__ import annotations

import ctypes
import struct
import sys
from collections.abc import Callable
from typing import Any, Final, cast

import wasmtime
from wasmtime import _bindings as _raw
from wasmtime import _ffi as ffi

from edgestate.errors import GuestFault, GuestTrapError

# A view of the whole address space, indexed by absolute address. Creating a
# memoryview per invocation costs ~0.3 us and a ctypes object per argument read
# ~0.1 us; struct.unpack_from at an address of this one view costs ~0.06 us.
ADDRESS_SPACE: Final = memoryview((ctypes.c_char * sys.maxsize).from_address(0)).cast("B")

VAL_RAW_SIZE: Final = ctypes.sizeof(ffi.wasmtime_val_raw_t)
_SLOT_PAD = {4: "12x", 8: "8x"}
_TYPE_CODE = {"i32": ("I", 4), "i64": ("q", 8), "i32s": ("i", 4)}

_NO_FINALIZER = ctypes.cast(0, ctypes.CFUNCTYPE(None, ctypes.c_void_p))
# Our own callback prototype: plain integers instead of ctypes POINTER objects,
# which ctypes would otherwise build for every call.
_RAW_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_size_t, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t
)
WASM_PAGE: Final = 65536


def slot_struct(types: list[str]) -> struct.Struct:
    """A Struct reading or writing ``types`` from consecutive val_raw slots.

    ``i32`` is read unsigned (pointers, lengths and handles are u32 offsets: a
    "negative" pointer is simply out of bounds); ``i32s`` is signed.
    """
    fmt = "<"
    for t in types:
        code, size = _TYPE_CODE[t]
        fmt += code + _SLOT_PAD[size]
    return struct.Struct(fmt)


def make_trap(message: str) -> int:
    """A new wasm trap carrying ``message``, as the address wasmtime expects back."""
    raw = message.encode()
    trap = ffi.wasmtime_trap_new(raw, len(raw))
    address = ctypes.cast(trap, ctypes.c_void_p).value
    assert address is not None
    return address


HostCallback = Callable[[Any, Any, int, int], int]
"""``(env, caller, args_address, nargs_and_results) -> 0 or a trap address``."""


class LinkerFunctions:
    """Host functions defined unchecked on one ``wasmtime.Linker``.

    Keeps the ctypes callbacks alive as long as the linker: wasmtime holds only
    their C addresses.
    """

    def __init__(self, linker: wasmtime.Linker) -> None:
        self._linker = linker
        self._keep: list[Any] = []

    def define(
        self,
        module: str,
        name: str,
        params: list[str],
        results: list[str],
        callback: HostCallback,
    ) -> None:
        """Define ``module.name`` with the given wasm value types (``i32``/``i64``)."""
        # FuncTypes are built here, per linker and so per engine: reusing one with
        # a second engine aborts the process.
        valtypes = {"i32": wasmtime.ValType.i32(), "i64": wasmtime.ValType.i64()}
        functype = wasmtime.FuncType([valtypes[p] for p in params], [valtypes[r] for r in results])

        raw = _RAW_CALLBACK(callback)
        self._keep.append((raw, functype))
        mod, fname = module.encode(), name.encode()
        error = ffi.wasmtime_linker_define_func_unchecked(
            self._linker.ptr(),
            mod,
            len(mod),
            fname,
            len(fname),
            functype.ptr(),
            ctypes.cast(raw, ffi.wasmtime_func_unchecked_callback_t),
            None,
            _NO_FINALIZER,
        )
        if error:
            raise wasmtime.WasmtimeError._from_ptr(error)


# ctypes (wasmtime-py loads its library as CDLL) releases the GIL around every
# call and takes it back after. Beside a busy thread (the store's writer) each take
# waits up to a switch interval, which dwarfs these microsecond calls; the same
# functions bound through PyDLL keep the GIL (see edgestate.runtime.sandbox).
_PYDLL = ctypes.PyDLL(ffi.dll._name)


def gil_holding(fn: Any) -> Any:
    """The same wasmtime C function, called without releasing the GIL."""
    bound = getattr(_PYDLL, fn.__name__)
    bound.argtypes, bound.restype = fn.argtypes, fn.restype
    return bound


_export_get = gil_holding(_raw._wasmtime_instance_export_get)
_memory_data = gil_holding(_raw._wasmtime_memory_data)
_memory_data_size = gil_holding(_raw._wasmtime_memory_data_size)


class GuestMemory:
    """Bounds-checked access to one instance's exported linear memory.

    The memory is looked up on first use (a no-op invocation never pays for it).
    Its size is cached; memory only grows, so a range beyond the cached size is
    re-checked against the live size before it is refused.
    """

    __slots__ = ("_base", "_context", "_instance", "_size", "ready")

    def __init__(self, context: Any, instance: Any) -> None:
        self._context = context
        self._instance = instance
        self._base = 0
        self._size = -1  # not looked up yet: the first range check refreshes
        # False until instantiation has filled in ``instance``: looking an export
        # up on an unfilled instance aborts the process inside wasmtime.
        self.ready = False

    def _refresh(self) -> None:
        if not self.ready:
            raise GuestFault(
                GuestTrapError("guest memory is not reachable from the host in a start function")
            )
        item = ffi.wasmtime_extern_t()
        name = b"memory"
        found = _export_get(
            self._context, ctypes.byref(self._instance), name, len(name), ctypes.byref(item)
        )
        if not found or cast(int, item.kind) != ffi.WASMTIME_EXTERN_MEMORY.value:
            raise GuestFault(GuestTrapError("the module exports no memory named 'memory'"))
        memory = item.of.memory
        data = _memory_data(self._context, ctypes.byref(memory))
        self._base = ctypes.cast(data, ctypes.c_void_p).value or 0
        self._size = _memory_data_size(self._context, ctypes.byref(memory))

    def address(self, ptr: int, length: int) -> int:
        """Absolute address of guest range ``[ptr, ptr+length)``; traps if out of bounds."""
        end = ptr + length
        if end > self._size:
            self._refresh()
            if end > self._size:
                raise GuestFault(
                    GuestTrapError(
                        f"pointer range [{ptr}, {end}) is outside guest memory ({self._size} bytes)"
                    )
                )
        return self._base + ptr

    @property
    def size(self) -> int:
        """Current size in bytes (refreshed)."""
        self._refresh()
        return self._size

    def read(self, ptr: int, length: int) -> bytes:
        """Copy ``length`` bytes out of guest memory."""
        start = self.address(ptr, length)
        return ADDRESS_SPACE[start : start + length].tobytes()

    def text(self, ptr: int, length: int) -> str:
        """Guest bytes decoded as UTF-8 (raises ``UnicodeDecodeError``)."""
        start = self.address(ptr, length)
        return str(ADDRESS_SPACE[start : start + length], "utf-8")

    def write(self, ptr: int, data: bytes) -> None:
        """Copy ``data`` into guest memory at ``ptr``."""
        start = self.address(ptr, len(data))
        ADDRESS_SPACE[start : start + len(data)] = data

    def write_from(self, ptr: int, source: bytes, start: int = 0) -> None:
        """Copy ``source[start:]`` into guest memory at ``ptr`` without slicing it.

        A big copy goes through ``memmove`` called by ctypes, which releases the
        GIL around it, so a guest looping on reads of a megabyte value does not
        hold up the worker's event loop for each copy (docs/containment.md: ~25 us
        per megabyte that the loop used to wait for). The guest's memory cannot
        move meanwhile: its only thread is the one in this host call."""
        length = len(source) - start
        dest = self.address(ptr, length)
        if length >= _UNLOCKED_COPY_BYTES:
            _memmove(dest, _bytes_address(source) + start, length)
        else:
            ADDRESS_SPACE[dest : dest + length] = memoryview(source)[start:]

    def write_i64(self, ptr: int, value: int) -> None:
        """Store ``value`` as a little-endian i64 at ``ptr``."""
        _I64.pack_into(ADDRESS_SPACE, self.address(ptr, 8), value)


_I64 = struct.Struct("<q")
# Below this a copy is cheaper than the GIL's release and reacquisition.
_UNLOCKED_COPY_BYTES: Final = 64 << 10
_memmove = ctypes.memmove


def _bytes_address(data: bytes) -> int:
    # A c_char_p of a bytes object points at its own buffer (no copy).
    address: int = ctypes.cast(ctypes.c_char_p(data), ctypes.c_void_p).value or 0
    return address
