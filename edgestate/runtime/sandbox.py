"""The per-request sandbox: a fresh wasmtime store and instance per invocation.

Everything reusable is built once per module in :class:`Sandbox` (the compiled
module, its ``InstancePre`` on the shared linker, the limits as raw numbers).
:meth:`Sandbox.run` does only what must happen per request: a new store with
its fuel, epoch deadline and memory limit, ``InstancePre`` instantiation, one
unchecked call of the entry, and classification of how it ended. It uses the
raw wasmtime bindings (see :mod:`edgestate.host.memory` for why); the store is
deleted as soon as the call returns, so nothing survives into the next request.
"""

from __future__ import annotations

import ctypes
import time
from dataclasses import dataclass
from typing import Any, Protocol

import wasmtime
from wasmtime import _bindings as _raw
from wasmtime import _ffi as ffi

from edgestate.errors import (
    DeadlineExceededError,
    GuestFault,
    GuestStatusError,
    GuestTrapError,
    InvocationError,
    MemoryLimitError,
    ModuleCompileError,
    OutOfFuelError,
)
from edgestate.host.abi import (
    HostContext,
    HostEnv,
    HostLimits,
)
from edgestate.host.binding import bind
from edgestate.host.kv import Grants
from edgestate.host.logbudget import LogBudget
from edgestate.host.memory import WASM_PAGE, GuestMemory, gil_holding
from edgestate.runtime.budget import EpochBudget
from edgestate.runtime.interface import check_interface
from edgestate.runtime.manifest import Manifest
from edgestate.runtime.policy import Grant
from edgestate.runtime.verdict import Watch, thread_cpu_clock
from edgestate.store import Store, WriteOp

_NO_FINALIZER = ctypes.cast(0, ctypes.CFUNCTYPE(None, ctypes.c_void_p))
_TRAP_OUT_OF_FUEL = 11  # WASMTIME_TRAP_CODE_OUT_OF_FUEL
_TRAP_INTERRUPT = 10  # WASMTIME_TRAP_CODE_INTERRUPT (epoch deadline)
# Table growth is bounded too, or a guest could grow a table instead of memory.
_MAX_TABLE_ELEMENTS = 100_000


class EpochUse(Protocol):
    """What a sandbox needs of its engine's epoch ticker (``EpochTicker``)."""

    def begin(self) -> int:
        """A guest starts; returns the ticks still owed by a late ticker."""
        ...

    def end(self) -> None:
        """That guest ended."""
        ...


class _NoTicker:
    """No ticker (a sandbox built on its own): nothing owed, nothing to tell."""

    def begin(self) -> int:
        return 0

    def end(self) -> None:
        pass


_NO_TICKER = _NoTicker()

# The ctypes function objects themselves: wasmtime-py's same-named wrappers add
# a Python frame (~0.1 us) to each of the dozen calls a request makes. Bound
# through gil_holding (see host.memory): measured with a store writer committing
# alongside, kv-echo ran ~8k/s with wasmtime-py's GIL-releasing bindings and ~13k/s
# this way, p99 405 -> 155 us.
# Calls that never run guest code: microseconds, always made holding the GIL.
_store_new = gil_holding(_raw._wasmtime_store_new)
_store_context = gil_holding(_raw._wasmtime_store_context)
_store_delete = gil_holding(_raw._wasmtime_store_delete)
_store_limiter = gil_holding(_raw._wasmtime_store_limiter)
_set_fuel = gil_holding(_raw._wasmtime_context_set_fuel)
_get_fuel = gil_holding(_raw._wasmtime_context_get_fuel)
_set_epoch_deadline = gil_holding(_raw._wasmtime_context_set_epoch_deadline)
_export_get = gil_holding(_raw._wasmtime_instance_export_get)
# Calls that run guest code (instantiation runs a start function). Holding the
# GIL through them also stops the epoch ticker, a Python thread, while pure guest
# code runs; so that is done only when fuel alone bounds them to a few ms.
_instantiate = _raw._wasmtime_instance_pre_instantiate
_call = _raw._wasmtime_func_call_unchecked
_instantiate_holding_gil = gil_holding(_instantiate)
_call_holding_gil = gil_holding(_call)
# ~1 fuel unit per wasm instruction: 20M units is ~10-20 ms of guest code.
GIL_HOLD_MAX_FUEL = 20_000_000
_trap_code = gil_holding(_raw._wasmtime_trap_code)
_Instance = ffi.wasmtime_instance_t
_Extern = ffi.wasmtime_extern_t
_TrapPointer = ctypes.POINTER(ffi.wasm_trap_t)
_Slots = ffi.wasmtime_val_raw_t * 1
_Fuel = ctypes.c_uint64
_byref = ctypes.byref
_now = time.perf_counter_ns
_monotonic = time.monotonic_ns  # the clock the budget rule checks (host.budget)
_thread_time = time.thread_time_ns  # a starved guest is told by its thread's CPU time


@dataclass(slots=True)
class Execution:
    """A successful run, before its writes are committed."""

    output: bytes
    fuel_used: int
    instantiate_ns: int
    execute_ns: int
    ops: list[WriteOp]
    host_calls: int = 0


class Sandbox:
    """One loaded module, ready to run in a fresh instance per request."""

    def __init__(
        self,
        *,
        store: Store,
        engine: wasmtime.Engine,
        linker: wasmtime.Linker,
        module: wasmtime.Module,
        manifest: Manifest,
        grant: Grant,
        host_limits: HostLimits,
        epoch_tick_ms: float,
        log_budget: LogBudget | None = None,
        epoch: EpochUse | None = None,
    ) -> None:
        self.manifest = manifest
        self.grant = grant
        check_interface(module, manifest, grant.memory_pages)
        try:
            self._pre = linker.instantiate_pre(module)
        except wasmtime.WasmtimeError as exc:
            raise ModuleCompileError(f"module {manifest.name!r} failed to link: {exc}") from exc
        self._module = module  # the InstancePre refers to it
        self._engine = engine
        self._engine_ptr = engine.ptr()
        self._pre_ptr = self._pre.ptr()
        self._entry = manifest.entry.encode()
        self._memory_bytes = grant.memory_pages * WASM_PAGE
        self._fuel = grant.fuel
        self._short = self._fuel <= GIL_HOLD_MAX_FUEL
        # The ticker runs while a guest does; begin() says the ticks a late ticker
        # still owes (see EpochTicker): they will come at once.
        self._epoch = epoch or _NO_TICKER
        self._budget = EpochBudget(epoch_tick_ms)
        self._env = HostEnv(
            store=store,
            grants=Grants(manifest.reads, manifest.writes),
            max_output=grant.max_output_bytes,
            limits=host_limits,
            module=manifest.name,
            log_budget=log_budget,
            wall_time_ms=grant.wall_time_ms,
        )
        self._wall_ns = grant.wall_time_ms * 1_000_000
        self.name = manifest.name

    def run(
        self,
        input: bytes,
        *,
        release_gil: bool = False,
        watch: Watch | None = None,
        arrived_ns: int | None = None,
    ) -> Execution:
        """Run the entry once in a fresh instance; raise an :class:`InvocationError` on failure.

        ``release_gil``: run guest code with the GIL released even when fuel bounds
        it to a few ms, as a thread beside a serving event loop must (holding it,
        a fuel-burning guest froze the loop: /healthz p50 17 ms, kv-echo at 14 %).
        ``watch``: told when the guest starts, for its caller's loop (runtime.verdict).
        ``arrived_ns`` (``time.monotonic_ns()``, default now): when its request
        arrived, where the budget's clock starts (host.budget).
        """
        hold = self._short and not release_gil
        call = _call_holding_gil if hold else _call
        instantiate = _instantiate_holding_gil if hold else _instantiate
        start = _now()
        began = _monotonic()
        arrived = began if arrived_ns is None else arrived_ns
        deadline = arrived + self._wall_ns
        # The first look at the tick the deadline falls in (runtime.budget), from
        # now: a guest that waited for a slot or its thread has less budget left.
        # An early look (the current epoch ticks at once) only sets the next one.
        ticks = self._budget.ticks_until(deadline, began)
        raw_store = _store_new(self._engine_ptr, None, _NO_FINALIZER)
        owed = self._epoch.begin()
        try:
            context = _store_context(raw_store)
            _set_fuel(context, self._fuel)
            self._budget.install(raw_store)
            _set_epoch_deadline(context, ticks + owed)
            _store_limiter(raw_store, self._memory_bytes, _MAX_TABLE_ELEMENTS, -1, -1, -1)
            instance = _Instance()
            trap = _TrapPointer()
            memory = GuestMemory(context, instance)
            host = HostContext(self._env, input, memory)
            host.arrived_ns = arrived
            host.started_ns = began
            host.deadline_ns = deadline
            host.cpu_start_ns = _thread_time()
            if watch is not None:
                watch.began_ns = began
                watch.clock = thread_cpu_clock()
                watch.context = host  # last: the loop reads it as "started"
            # Bound before instantiation too: a start function may call the host.
            bind(host)
            try:
                error = instantiate(self._pre_ptr, context, _byref(instance), _byref(trap))
                if error or trap:
                    if isinstance(host.fault, DeadlineExceededError):  # a start function's
                        _message(error, trap)  # frees it
                        raise _ran(host.fault, began, arrived)
                    raise self._instantiation_failure(error, trap)
                memory.ready = True
                item = _Extern()
                _export_get(context, _byref(instance), self._entry, len(self._entry), _byref(item))
                slots = _Slots()
                started = _now()
                error = call(context, _byref(item.of.func), slots, 1, _byref(trap))
                finished = _now()
            finally:
                bind(None)
            remaining = _Fuel()
            _get_fuel(context, _byref(remaining))
            if error or trap:
                failure = self._call_failure(error, trap, host, memory)
                if isinstance(failure, DeadlineExceededError):
                    raise _ran(failure, began, arrived)
                raise failure
            status = slots[0].i32
            if status != 0:
                if self._memory_full(memory):
                    raise MemoryLimitError(
                        f"module {self.name!r} returned status {status} after filling its "
                        f"memory limit of {self.grant.memory_pages} pages",
                        guest_status=status,
                    )
                raise GuestStatusError(
                    f"module {self.name!r} returned status {status}", guest_status=status
                )
            return Execution(
                output=host.output_bytes(),
                fuel_used=self._fuel - remaining.value,
                instantiate_ns=started - start,
                execute_ns=finished - started,
                ops=host.ops(),
                host_calls=host.host_calls,
            )
        finally:
            self._epoch.end()
            _store_delete(raw_store)

    def _budget_failure(self, trap: Any) -> InvocationError | None:
        """OutOfFuel or DeadlineExceeded if ``trap`` says a budget ran out."""
        code = ctypes.c_uint8(255)
        if not trap or not _trap_code(trap, _byref(code)):
            return None
        if code.value == _TRAP_OUT_OF_FUEL:
            return OutOfFuelError(f"module {self.name!r} used up its fuel ({self._fuel} units)")
        if code.value == _TRAP_INTERRUPT:
            return DeadlineExceededError(
                f"module {self.name!r} ran past its wall-time budget of "
                f"{self.grant.wall_time_ms} ms"
            )
        return None

    def _instantiation_failure(self, error: Any, trap: Any) -> InvocationError:
        budget = self._budget_failure(trap)
        message = _message(error, trap)
        if budget is not None:
            return budget
        if "maximum concurrent" in message:
            return InvocationError(
                f"module {self.name!r} could not start: every instance slot is busy "
                f"({message}); raise RuntimeConfig.max_instances or run fewer at once"
            )
        if "memory" in message and ("limit" in message or "minimum" in message):
            return MemoryLimitError(f"module {self.name!r} could not get its memory: {message}")
        return GuestTrapError(f"module {self.name!r} failed to instantiate: {message}")

    def _call_failure(
        self, error: Any, trap: Any, host: HostContext, memory: GuestMemory
    ) -> InvocationError:
        budget = self._budget_failure(trap)
        message = _message(error, trap)
        name = self.name
        if budget is not None:
            return budget
        if host.fault is not None:
            if isinstance(host.fault, InvocationError):
                return host.fault
            failure = GuestTrapError(f"module {name!r} trapped in a host call: {host.fault}")
            failure.__cause__ = host.fault
            return failure
        if self._memory_full(memory):
            return MemoryLimitError(
                f"module {name!r} failed after filling its memory limit of "
                f"{self.grant.memory_pages} pages: {message}"
            )
        return GuestTrapError(f"module {name!r} trapped: {message}")

    def _memory_full(self, memory: GuestMemory) -> bool:
        # memory.grow past the limit only returns -1 to the guest, so the runtime
        # cannot see the refusal itself; a failure with memory full is reported
        # as what it almost certainly is.
        try:
            return memory.size + WASM_PAGE > self._memory_bytes
        except GuestFault:
            return False


def _ran(error: DeadlineExceededError, began: int, arrived: int) -> DeadlineExceededError:
    # The guest's own run, from its sandbox's start to its call unwound (the
    # API's X-Edgestate-Execute-Us on the 504), and the budget's clock then, from
    # its request's arrival (X-Edgestate-Budget-Us): what "ends within a tick" is about.
    now = _monotonic()
    error.ran_ns = now - began
    error.budget_ns = now - arrived
    return error


def _message(error: Any, trap: Any) -> str:
    """The cause line of a wasmtime error or trap (taking ownership, so it is freed)."""
    if error:
        text = str(wasmtime.WasmtimeError._from_ptr(error))
    elif trap:
        text = wasmtime.Trap._from_ptr(trap).message
    else:
        return "unknown failure"
    # wasmtime puts a backtrace first and the cause ("wasm trap: ...") last.
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else text
