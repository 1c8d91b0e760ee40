"""The wasmtime engine, its configuration and the epoch ticker.

One engine per runtime: the linker, compiled modules and ``InstancePre``s all
belong to it and are built once. Its configuration is part of the compiled-module
cache key, so changing it (or upgrading wasmtime) recompiles instead of loading
artifacts built for another setup.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import wasmtime
from wasmtime import _ffi as ffi

from edgestate.host.abi import HostLimits
from edgestate.runtime.admission import AdmissionConfig

log = logging.getLogger(__name__)

WASMTIME_VERSION = importlib.metadata.version("wasmtime")


@dataclass(frozen=True, slots=True, kw_only=True)
class RuntimeConfig:
    """Tunables of a runtime. Each default carries its reason."""

    # Compiled modules are cached here (None: compile on every start).
    cache_dir: Path | None = None
    # Secret for the cache entries' HMAC (a node keeps one in DATA/cache.key); None
    # checks digests only, which catch corruption but not a planted entry.
    cache_key: bytes | None = field(default=None, repr=False)
    # Wall-time budgets are enforced by epochs: a thread bumps the engine's epoch
    # every tick and a store traps once its deadline epoch passes. A 2 ms tick
    # bounds overshoot at 2 ms for ~500 cheap wake-ups a second.
    epoch_tick_ms: float = 2.0
    # Input handed to one invocation: the guest sees its length as an i32.
    max_input_bytes: int = 16 << 20
    # Instances that may be alive at once (one per invocation in flight). The
    # pooling allocator reserves this many memory slots up front, each a 4 GiB
    # reservation of address space (not memory), and reuses them: that halves
    # instantiation time and keeps page faults off the request path. wasm runs
    # synchronously on the calling thread, so this bounds threads, not requests.
    max_instances: int = 100
    # Largest linear memory any module may be granted, whatever its policy.
    max_memory_pages: int = 16384  # 1 GiB
    host: HostLimits = field(default_factory=HostLimits)
    # Where async invocations run and how many of one module at once.
    admission: AdmissionConfig = field(default_factory=AdmissionConfig)


# The engine settings, as one string: part of the cache key.
_ENGINE_SETTINGS = (
    ("consume_fuel", True),
    ("epoch_interruption", True),
    # The host memory layer keeps raw addresses into guest memory for the length
    # of a host call; a memory that cannot move keeps them valid.
    ("memory_may_move", False),
    ("cranelift_opt_level", "speed"),
    # Features the host ABI does not support are off, so such modules fail to
    # compile with a clear message instead of misbehaving.
    ("wasm_threads", False),
    ("wasm_memory64", False),
    ("wasm_multi_memory", False),
)


def build_engine(config: RuntimeConfig | None = None) -> wasmtime.Engine:
    """A new engine with edgestate's sandbox settings and a pooling allocator."""
    config = config or RuntimeConfig()
    wasm_config = wasmtime.Config()
    for name, value in _ENGINE_SETTINGS:
        setattr(wasm_config, name, value)
    # wasmtime-py has no wrapper for the pooling allocator; the C API does.
    pooling = ffi.wasmtime_pooling_allocation_config_new()
    ffi.wasmtime_pooling_allocation_config_total_core_instances_set(pooling, config.max_instances)
    ffi.wasmtime_pooling_allocation_config_total_memories_set(pooling, config.max_instances)
    ffi.wasmtime_pooling_allocation_config_total_tables_set(pooling, config.max_instances)
    ffi.wasmtime_pooling_allocation_config_max_memory_size_set(
        pooling, config.max_memory_pages * 65536
    )
    ffi.wasmtime_pooling_allocation_strategy_set(wasm_config.ptr(), pooling)
    ffi.wasmtime_pooling_allocation_config_delete(pooling)
    return wasmtime.Engine(wasm_config)


def engine_fingerprint(config: RuntimeConfig | None = None) -> str:
    """Hex digest of the wasmtime version and engine settings."""
    config = config or RuntimeConfig()
    settings = [*_ENGINE_SETTINGS, ("pooling_max_memory_pages", config.max_memory_pages)]
    text = f"wasmtime={WASMTIME_VERSION};" + ";".join(f"{k}={v}" for k, v in settings)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class EpochTicker:
    """Advances an engine's epoch by one per ``tick_ms`` of wall time, on a daemon
    thread, while a guest runs; parked (no wake-ups) while none does.

    wasm runs with the GIL released (wasmtime-py loads its library with ctypes
    ``CDLL``), so the ticker keeps ticking while a guest spins. The epoch follows
    the clock, not the number of wake-ups: a wake-up that comes late (a loaded
    machine, a thread holding the GIL) catches up with every tick it missed, so
    a deadline of N ticks is N ticks of wall time, not N wake-ups (measured on a
    loaded 2-core machine: counting wake-ups let a 1,000 ms spin run 1.1-1.6 s).
    Catching up moves the epoch several ticks at once, so a deadline set while
    the thread is late would fire early: :meth:`begin` says how many ticks are
    still owed, for the sandbox to add.

    Parked between guests: a deadline is relative to the epoch when it is set,
    so the epoch need not move while nothing runs, and an idle node or worker
    then does not wake 500 times a second for nothing (a small edge box idles
    most of the day). The first guest to start restarts the clock from the
    ticks made so far, so nothing is owed for the time parked.
    """

    def __init__(self, engine: wasmtime.Engine, tick_ms: float) -> None:
        self._engine = engine
        self._interval = tick_ms / 1000
        self._cond = threading.Condition(threading.Lock())
        self._running = 0  # guests running now; under _cond
        self._stopped = False
        self._start = time.monotonic()
        self._ticks = 0  # made so far; written by the thread only
        self._thread = threading.Thread(target=self._run, name="edgestate-epoch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        interval = self._interval
        increment = self._engine.increment_epoch
        clock = time.monotonic
        cond = self._cond
        while True:
            with cond:
                while self._running == 0 and not self._stopped:
                    cond.wait()
                if self._stopped:
                    return
                start = self._start
                # Sleeps on the condition too, so stop() is heard at once.
                cond.wait(max(0.0, start + (self._ticks + 1) * interval - clock()))
                if self._stopped:
                    return
                start = self._start
            due = int((clock() - start) / interval)
            while self._ticks < due:
                increment()
                self._ticks += 1

    def begin(self) -> int:
        """A guest starts: tick while it runs. Returns the ticks the clock says are
        due but the thread has not made yet (they will come at once)."""
        with self._cond:
            self._running += 1
            if self._running == 1:
                # From parked: the clock restarts where the ticks are.
                self._start = time.monotonic() - self._ticks * self._interval
                self._cond.notify()
                return 0
            return max(0, int((time.monotonic() - self._start) / self._interval) - self._ticks)

    def end(self) -> None:
        """A guest begun with :meth:`begin` ended (the ticker parks after the last)."""
        with self._cond:
            self._running -= 1

    @property
    def ticks(self) -> int:
        """Epochs advanced so far (they only advance while a guest runs)."""
        return self._ticks

    def stop(self) -> None:
        """Ask the thread to stop, without waiting for it."""
        with self._cond:
            self._stopped = True
            self._cond.notify()

    def close(self) -> None:
        """Stop the thread and wait for it (idempotent)."""
        self.stop()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join()
