"""Errors of running modules: sandbox, manifests, signatures, versions, invocations.

Part of the tree in ``edgestate.errors`` (its docstring); import from there."""

from __future__ import annotations

from edgestate.errors.base import EdgestateError


class RuntimeFault(EdgestateError):
    """A failure to load or run a module."""

    code = "runtime_error"


class ManifestError(RuntimeFault):
    """A module manifest that fails its schema or is inconsistent."""

    code = "invalid_manifest"


class SignatureError(RuntimeFault):
    """A module whose signature is missing, malformed or does not verify."""

    code = "bad_signature"


class SignatureOverwriteError(RuntimeFault):
    """``edgestate sign`` refusing to replace a signature file that signs other bytes
    (another module, another build, or not a signature at all) without ``--force``."""

    code = "signature_exists"


class UntrustedPublisherError(RuntimeFault):
    """A module signed by a key that is not in the trust policy."""

    code = "untrusted_publisher"


class PolicyViolationError(RuntimeFault):
    """A manifest asking for more than its publisher's policy allows."""

    code = "policy_violation"


class ModuleOwnershipError(RuntimeFault):
    """A deploy under a module name another publisher holds or the policy reserves.

    The message names the owner; removing the module frees the name.
    """

    code = "module_owned"


class ModuleNotFoundError_(RuntimeFault):  # trailing _: the builtin name is taken
    """No deployed module of that name."""

    code = "unknown_module"


class ModuleVersionError(RuntimeFault):
    """A deploy or rollback refused by the module's kept version history (docs/rollback.md)."""

    code = "module_version"


class ModuleDowngradeError(ModuleVersionError):
    """A deploy of a version lower (semver order) than the cluster's active one.

    Refused unless the deploy says it means it (``allow_downgrade``): deploying an
    old build by mistake would roll every node back silently.
    """

    code = "module_downgrade"


class ModuleVersionReusedError(ModuleVersionError):
    """A deploy of the active version number with different wasm or manifest bytes.

    Two different builds under one version number make "which code runs" depend on
    the node; refused unless ``allow_downgrade`` says it is meant.
    """

    code = "module_version_reused"


class UnknownModuleVersionError(ModuleVersionError):
    """A rollback to a version the module's history does not keep (never deployed, or
    dropped past the history bound); the message lists the kept versions."""

    code = "unknown_version"


class NoRollbackTargetError(ModuleVersionError):
    """A rollback with nowhere to go: the version asked for is the active one, or no
    kept version was deployed before the active one."""

    code = "nothing_to_roll_back"


class ModuleCompileError(RuntimeFault):
    """The wasm failed to compile or to link against the host ABI."""

    code = "compile_failed"


class InvocationError(RuntimeFault):
    """One invocation failed; nothing it wrote became visible.

    ``guest_status`` is the entry's non-zero return value when it returned one
    (the API sends it as ``X-Edgestate-Status``), else None.
    """

    code = "invocation_failed"

    def __init__(self, message: str, *, guest_status: int | None = None) -> None:
        super().__init__(message)
        self.guest_status = guest_status


class GuestTrapError(InvocationError):
    """The guest trapped (unreachable, out-of-bounds pointer, stack overflow...)."""

    code = "trap"


class OutOfFuelError(InvocationError):
    """The invocation used up its fuel (CPU budget)."""

    code = "out_of_fuel"


class DeadlineExceededError(InvocationError):
    """The invocation ran past its wall-time budget.

    ``ran_ns``: how long the guest ran, from its sandbox's start on its
    invocation thread until it was stopped (set by the sandbox; None if unknown).
    ``budget_ns``: how long its budget's clock had run then, from the request's
    arrival (what the budget limits; None if unknown).
    """

    code = "deadline_exceeded"
    ran_ns: int | None = None
    budget_ns: int | None = None


class MemoryLimitError(InvocationError):
    """The guest tried to grow memory past its limit."""

    code = "memory_limit"


class OutputTooLargeError(InvocationError):
    """The guest wrote more output than its manifest allows."""

    code = "output_too_large"


class GuestStatusError(InvocationError):
    """The entry export returned a non-zero status."""

    code = "guest_status"


class HostBugError(GuestTrapError):
    """A host function raised unexpectedly: the guest traps, the node carries on.

    The original exception is the ``__cause__``; the guest sees only a generic
    trap message, never host internals.
    """


class BusyError(InvocationError):
    """Refused before it ran: the module already runs its share of invocations.

    The admission rule (``edgestate.runtime.admission``) caps how many
    invocations of one module run at once and how many may wait; past that the
    invocation is refused at once, so a module burning its budgets cannot take
    every thread. ``retry_after_s`` is sent as ``Retry-After``.
    """

    code = "busy"

    def __init__(self, message: str, *, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ClientGoneError(InvocationError):
    """Refused before it ran: its client closed the connection while it was queued.

    The admission rule hands a free slot only to an invocation whose caller is
    still there, so a client that gave up neither runs its module for nobody nor
    holds a place in the queue that others are refused for. Nobody reads the
    answer; it is counted under ``outcome="client_gone"``.
    """

    code = "client_gone"


class HostCallRefused(RuntimeFault):
    """Raised inside a host function to return ``status`` (negative) to the guest.

    It never leaves the host call. Always raise a new instance: re-raising a
    shared one chains every raise's traceback onto it, keeping each
    invocation's frames alive.
    """

    code = "host_call_refused"

    def __init__(self, status: int) -> None:
        super().__init__(getattr(status, "name", str(status)))
        self.status = status


class GuestFault(RuntimeFault):
    """A guest bug found by a host function; the invocation traps with it.

    ``error`` is the exception of this tree the invocation will raise.
    """

    code = "guest_fault"

    def __init__(self, error: EdgestateError) -> None:
        super().__init__(str(error))
        self.error = error
