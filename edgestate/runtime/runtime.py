"""The runtime: signed modules in, sandboxed invocations against a store out.

    runtime = Runtime(store, TrustPolicy.load("trust-policy.json"),
                      RuntimeConfig(cache_dir=Path("cache")))
    runtime.load_files(Path("counter.wasm"))       # verify, check policy, compile
    result = runtime.invoke("counter", b"visits")  # or: await runtime.ainvoke(...)

Loading checks, in order and before anything is compiled: the signature file
parses, its key belongs to a trusted publisher, the signature covers exactly
these wasm and manifest bytes, the manifest is valid and within its publisher's
policy. Invoking runs the wasm synchronously (microseconds), then commits the
invocation's writes as one store batch, only if the entry returned 0.
``ainvoke`` runs the wasm on the runtime's small thread pool, never on the
caller's event loop, after the admission rule (:mod:`edgestate.runtime.admission`)
gave it one of its module's slots; then it awaits the batch through the store's
group commit, so concurrent invocations share one fsync.

The runtime keeps no counters: each invocation reports its outcome (an
:class:`InvocationResult` with its timings, or an ``InvocationError``) and the
caller counts it (a node's :class:`~edgestate.node.metrics.NodeMetrics`), once.
"""

from __future__ import annotations

import functools
import hashlib
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import wasmtime

from edgestate.errors import (
    InvocationError,
    ModuleNotFoundError_,
    PolicyViolationError,
    SignatureError,
    StoreError,
)
from edgestate.host.binding import define_host_functions
from edgestate.host.logbudget import LogBudget, grant_batch_bytes
from edgestate.runtime.admission import Admission, Gone, Held, lower_thread_priority
from edgestate.runtime.cache import ModuleCache
from edgestate.runtime.engine import (
    EpochTicker,
    RuntimeConfig,
    build_engine,
    engine_fingerprint,
)
from edgestate.runtime.guest_threads import GuestThreads
from edgestate.runtime.manifest import Manifest, parse_manifest
from edgestate.runtime.policy import Grant, Owner, TrustPolicy
from edgestate.runtime.sandbox import Execution, Sandbox
from edgestate.runtime.signing import parse_signature, verify_module
from edgestate.runtime.verdict import Verdict, Watch
from edgestate.store import Store

_monotonic = time.monotonic_ns  # the budget's clock (host.budget)


class InvocationResult(NamedTuple):
    """A successful invocation, after its writes became durable.

    A NamedTuple rather than a frozen dataclass: it is built on every request,
    and a frozen dataclass costs ~1.2 us to construct against ~0.3 us.
    """

    module: str
    output: bytes
    status: int
    fuel_used: int
    instantiate_ns: int
    execute_ns: int
    commit_ns: int
    writes: int
    host_calls: int = 0


@dataclass(frozen=True, slots=True)
class LoadedModule:
    """A verified, compiled module ready to invoke."""

    name: str
    version: str
    publisher: str
    wasm_sha256: str
    load_ns: int
    sandbox: Sandbox


def bundle_paths(wasm: Path) -> tuple[Path, Path]:
    """Default manifest and signature paths next to ``NAME.wasm``."""
    return wasm.with_suffix(".manifest.json"), wasm.with_suffix(".sig")


def read_bundle(
    wasm: Path, manifest: Path | None = None, signature: Path | None = None
) -> tuple[bytes, bytes, bytes]:
    """(wasm, manifest, signature) bytes; manifest and signature default to beside the wasm."""
    default_manifest, default_signature = bundle_paths(wasm)
    signature = signature or default_signature
    if not signature.exists():
        raise SignatureError(
            f"{wasm} is unsigned: no signature file {signature} (make one with `edgestate sign`)"
        )
    return _read(wasm), _read(manifest or default_manifest), _read(signature)


class Runtime:
    """Loaded modules of one node and the engine they run on."""

    def __init__(
        self,
        store: Store,
        policy: TrustPolicy,
        config: RuntimeConfig | None = None,
        *,
        log_grants: Callable[[str, int], None] | None = None,
    ) -> None:
        """``log_grants``: guest log budgets are granted by someone else (an invocation
        worker's node: see :mod:`edgestate.host.logbudget`), asked with it."""
        self.store = store
        self.policy = policy
        self.config = config or RuntimeConfig()
        self.engine = build_engine(self.config)
        self.linker = wasmtime.Linker(self.engine)
        self._host_functions = define_host_functions(self.linker)
        self.cache = ModuleCache(
            self.engine,
            self.config.cache_dir,
            engine_fingerprint(self.config),
            key=self.config.cache_key,
        )
        self._modules: dict[str, LoadedModule] = {}
        # Who holds each module name. Outlives unload (a refused reload, a policy
        # change): only release() frees a name, when the module is removed.
        # Seeded by whoever persists it (the node's registry) before loading.
        self.owners: dict[str, Owner] = {}
        # One guest log budget per module name, kept across redeploys: a redeploy
        # must not refill it.
        self._log_budgets: dict[str, LogBudget] = {}
        self._log_grants = log_grants
        self._ticker = EpochTicker(self.engine, self.config.epoch_tick_ms)
        # A runtime dropped without close() must not leave its ticker running.
        weakref.finalize(self, self._ticker.stop)
        self.admission = Admission(self.config.admission)
        threads = self.config.admission.threads
        # Each running invocation holds an instance slot: more threads than slots
        # would only turn into "every instance slot is busy" errors.
        niceness = self.config.admission.thread_niceness
        self._executor = (
            GuestThreads(
                min(threads, self.config.max_instances),
                initializer=functools.partial(lower_thread_priority, niceness),
            )
            if threads > 0
            else None
        )

    def close(self) -> None:
        """Stop the epoch ticker and the invocation threads (running guests end by
        their budgets). The store is the caller's to close."""
        if self._executor is not None:
            self._executor.close()
        self._ticker.close()

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- loading ------------------------------------------------------------------

    def verify(self, wasm: bytes, manifest: bytes, signature: bytes) -> tuple[Manifest, str]:
        """The checks of :meth:`load` that need no compiling: signature, trusted
        publisher, name ownership, size and grant. Nothing is loaded or replaced.

        Returns the parsed manifest and the publisher's name in this policy.
        """
        parsed, _, grant = self._checked(wasm, manifest, signature)
        return parsed, grant.publisher

    def _checked(
        self, wasm: bytes, manifest: bytes, signature: bytes
    ) -> tuple[Manifest, bytes, Grant]:
        parsed_signature = parse_signature(signature)
        self.policy.publisher(parsed_signature.public_key)  # untrusted: refuse early
        verify_module(wasm, manifest, parsed_signature)
        parsed = parse_manifest(manifest)
        key = parsed_signature.public_key
        self.policy.check_name(key, parsed.name, self.owners.get(parsed.name))
        self.policy.check_size(key, parsed.name, len(wasm))
        return parsed, key, self.policy.check(key, parsed)

    def load(self, wasm: bytes, manifest: bytes, signature: bytes) -> LoadedModule:
        """Verify and compile a module, replacing any loaded module of the same name.

        The name must be one its publisher may own (:meth:`TrustPolicy.check_name`):
        a module held by another publisher is never replaced.
        """
        start = time.perf_counter_ns()
        parsed, key, grant = self._checked(wasm, manifest, signature)
        if grant.memory_pages > self.config.max_memory_pages:
            raise PolicyViolationError(
                f"module {parsed.name!r} asks for limits.memory_pages = {grant.memory_pages}, "
                f"over this node's limit of {self.config.max_memory_pages}"
            )
        digest = hashlib.sha256(wasm).hexdigest()
        compiled = self.cache.load(wasm, digest)
        sandbox = Sandbox(
            store=self.store,
            engine=self.engine,
            linker=self.linker,
            module=compiled,
            manifest=parsed,
            grant=grant,
            host_limits=self.config.host,
            epoch_tick_ms=self.config.epoch_tick_ms,
            log_budget=self._log_budget(parsed.name),
            epoch=self._ticker,
        )
        loaded = LoadedModule(
            name=parsed.name,
            version=parsed.version,
            publisher=grant.publisher,
            wasm_sha256=digest,
            load_ns=time.perf_counter_ns() - start,
            sandbox=sandbox,
        )
        self._modules[parsed.name] = loaded
        self.owners[parsed.name] = Owner(grant.publisher, key)
        return loaded

    def load_files(
        self, wasm: Path, manifest: Path | None = None, signature: Path | None = None
    ) -> LoadedModule:
        """Load ``NAME.wasm`` with ``NAME.manifest.json`` and ``NAME.sig`` beside it."""
        return self.load(*read_bundle(wasm, manifest, signature))

    def _log_budget(self, name: str) -> LogBudget:
        budget = self._log_budgets.get(name)
        if budget is None:
            host = self.config.host
            budget = self._log_budgets[name] = LogBudget(
                name,
                rate_bytes_per_s=host.log_rate_bytes_per_s,
                burst_bytes=host.log_burst_bytes,
                note_interval_s=host.log_note_interval_s,
                ask=self._log_grants,
                batch_bytes=grant_batch_bytes(host.log_burst_bytes),
            )
        return budget

    def grant_log(self, name: str, nbytes: int) -> None:
        """Credit ``nbytes`` of guest log budget to ``name`` (granted budgets only)."""
        budget = self._log_budgets.get(name)
        if budget is not None:
            budget.grant(nbytes)

    def log_budgets(self) -> list[LogBudget]:
        """The guest log budget of every module loaded so far, by name (for metrics)."""
        return [self._log_budgets[n] for n in sorted(self._log_budgets)]

    def modules(self) -> list[LoadedModule]:
        """Loaded modules, by name."""
        return [self._modules[n] for n in sorted(self._modules)]

    def module(self, name: str) -> LoadedModule:
        """One loaded module, or :class:`ModuleNotFoundError_`."""
        found = self._modules.get(name)
        if found is None:
            raise ModuleNotFoundError_(f"no module named {name!r} is loaded")
        return found

    def unload(self, name: str) -> None:
        """Forget a module (in-flight invocations finish on their own reference).

        Its name stays held by its publisher; :meth:`release` frees it.
        """
        self.module(name)
        del self._modules[name]

    def release(self, name: str) -> None:
        """Free a module name (the module was removed): any publisher may take it."""
        self.owners.pop(name, None)

    # --- invoking -----------------------------------------------------------------

    def run(
        self,
        name: str,
        input: bytes = b"",
        *,
        release_gil: bool = False,
        watch: Watch | None = None,
        arrived_ns: int | None = None,
    ) -> Execution:
        """Run the module's entry without committing: its staged writes are in ``ops``.

        ``release_gil``, ``watch``, ``arrived_ns``: see :meth:`Sandbox.run` (the
        invocation threads pass them all).
        """
        sandbox = self.module(name).sandbox
        if len(input) > self.config.max_input_bytes:
            raise InvocationError(
                f"input of {len(input)} bytes is over the limit of {self.config.max_input_bytes}"
            )
        return sandbox.run(
            input,
            release_gil=release_gil,
            watch=watch,
            arrived_ns=arrived_ns,
        )

    def invoke(self, name: str, input: bytes = b"") -> InvocationResult:
        """Run a module once and durably commit its writes (blocking)."""
        execution = self.run(name, input)
        if not execution.ops:
            return self._finish(name, execution, 0)
        start = time.perf_counter_ns()
        try:
            self.store.batch(execution.ops)
        except StoreError as exc:
            raise _commit_failure(name, exc) from exc
        return self._finish(name, execution, time.perf_counter_ns() - start)

    async def ainvoke(
        self,
        name: str,
        input: bytes = b"",
        *,
        gone: Gone | None = None,
        arrived_ns: int | None = None,
    ) -> InvocationResult:
        """Async :meth:`invoke`: admitted, run on a thread, committed in a group commit.

        Raises :class:`~edgestate.errors.BusyError` when the module already runs
        (and queues) all the invocations the admission rule lets it, and
        :class:`~edgestate.errors.ClientGoneError` when ``gone()`` (the caller's
        client disconnected) turned true while it was queued. ``arrived_ns``: see
        :meth:`arun`.
        """
        execution = await self.arun(name, input, gone=gone, arrived_ns=arrived_ns)
        if not execution.ops:
            return self._finish(name, execution, 0)
        start = time.perf_counter_ns()
        try:
            await self.store.abatch(execution.ops)
        except StoreError as exc:
            raise _commit_failure(name, exc) from exc
        return self._finish(name, execution, time.perf_counter_ns() - start)

    async def arun(
        self,
        name: str,
        input: bytes = b"",
        *,
        gone: Gone | None = None,
        arrived_ns: int | None = None,
    ) -> Execution:
        """Async :meth:`run` under the admission rule, on the invocation threads.

        For a caller that commits ``ops`` its own way (an invocation worker sending
        them to the node's writer); :class:`~edgestate.errors.BusyError` as ``ainvoke``.
        ``arrived_ns`` (``time.monotonic_ns()``, default now): when the request
        arrived, where its wall-time budget starts, so the wait for a slot and for
        a thread is inside it; a slot is waited for at most until that budget ends.
        A guest past its budget is answered by this loop even before its thread
        noticed (:mod:`edgestate.runtime.verdict`); its result is then dropped.
        """
        module = self.module(name)  # an unknown name is "not found", never "busy"
        arrived = _monotonic() if arrived_ns is None else arrived_ns
        wall_time_ms = module.sandbox.grant.wall_time_ms
        # A request whose budget ran out while it queued would only be stopped at
        # once: it is refused busy then (nothing ran), so its answer still comes
        # by its deadline.
        left_ms = wall_time_ms - (_monotonic() - arrived) / 1e6
        async with self.admission.slot(name, gone=gone, budget_left_ms=left_ms) as held:
            # The slot covers the run only: the commit waits on the disk, not a thread.
            if self._executor is None:
                return self.run(name, input, arrived_ns=arrived)
            return await self._run_on_thread(
                self._executor, name, input, wall_time_ms, held, arrived
            )

    async def _run_on_thread(
        self,
        executor: GuestThreads,
        name: str,
        input: bytes,
        wall_time_ms: int,
        held: Held,
        arrived_ns: int,
    ) -> Execution:
        # In the caller's context (GuestThreads carries it): what the guest logs
        # keeps the request's context variables (its request id).
        watch = Watch()
        work = functools.partial(_watched, self.run, name, input, watch, arrived_ns)
        result = executor.submit(work)
        verdict = Verdict(
            result,
            watch,
            deadline_ns=arrived_ns + wall_time_ms * 1_000_000,
            tick_ms=self.config.epoch_tick_ms,
        )
        try:
            return await verdict.answer
        except BaseException:
            # Answered before its thread ended (the budget's verdict, or a caller
            # that left): a thread cannot be stopped, so the slot is held until its
            # guest ends (by its budget at the latest), or the module could run past
            # its cap. Its result is dropped: nothing it staged is committed.
            held.until(result)
            raise

    @staticmethod
    def _finish(name: str, execution: Execution, commit_ns: int) -> InvocationResult:
        return InvocationResult(
            module=name,
            output=execution.output,
            status=0,
            fuel_used=execution.fuel_used,
            instantiate_ns=execution.instantiate_ns,
            execute_ns=execution.execute_ns,
            commit_ns=commit_ns,
            writes=len(execution.ops),
            host_calls=execution.host_calls,
        )


def _watched(
    run: Callable[..., Execution],
    name: str,
    input: bytes,
    watch: Watch,
    arrived_ns: int,
) -> Execution:
    # On the guest's thread: once this returns, its result is the answer (Verdict).
    try:
        return run(
            name,
            input,
            release_gil=True,
            watch=watch,
            arrived_ns=arrived_ns,
        )
    finally:
        watch.ended = True


def _commit_failure(name: str, exc: StoreError) -> InvocationError:
    return InvocationError(f"module {name!r} succeeded but its writes were refused: {exc}")


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ModuleNotFoundError_(f"cannot read {path}: {exc.strerror}") from exc
