"""The edgestate error tree.

Every error the library raises on purpose is an ``EdgestateError``; callers at an
edge (the CLI, the HTTP API, the host ABI) catch that one base class and turn it
into an exit code, a JSON error or a negative status for the guest. Each class
carries a stable ``code`` string, used by the CLI ``--json`` output and the API.

    EdgestateError
    ├── StoreError                      the durable state layer
    │   ├── InvalidKeyError             key not a str, not UTF-8 encodable, empty or too long
    │   ├── ValueTooLargeError          value over the configured size limit
    │   ├── InvalidDocumentNameError    document name breaking the rule (store/names.py)
    │   ├── SystemDocumentError         a user write to one of the node's own `_` documents
    │   ├── UnknownDocumentError        document never created in this store
    │   ├── WrongTypeError              incr on a plain value, or a plain op on a counter
    │   ├── InvalidUpdateError          corrupt or foreign CRDT update bytes
    │   │   ├── UnsupportedUpdateEncodingError   a Yjs v2 update (only v1 is accepted)
    │   │   └── StaleReplicaError       from a replica behind history this node collected
    │   ├── InvalidCursorError          a scan cursor we did not issue
    │   ├── FormatVersionError          data directory written by another format version
    │   ├── StoreLockedError            another process holds the directory for writing
    │   ├── StoreMissingError           a node's data directory whose store is gone or empty
    │   ├── StoreCorruptError           store file damaged (truncated, bad pages or entries)
    │   ├── StoreClosedError            the store was closed
    │   └── ReadOnlyStoreError          a write on a store opened read-only
    ├── RuntimeFault                    running modules (sandbox, manifests, signatures)
    │   ├── ManifestError               manifest fails its schema or is inconsistent
    │   ├── SignatureError              unsigned, tampered or wrongly signed module
    │   ├── SignatureOverwriteError     signing would replace the signature of other bytes
    │   ├── UntrustedPublisherError     publisher key not in the trust policy
    │   ├── PolicyViolationError        manifest asks for more than its publisher may grant
    │   ├── ModuleOwnershipError        module name held by, or reserved for, another publisher
    │   ├── ModuleNotFoundError_        no such deployed module
    │   ├── ModuleVersionError          a deploy or rollback the module's version history refuses
    │   │   ├── ModuleDowngradeError    a deploy of a version lower than the active one
    │   │   ├── ModuleVersionReusedError  the active version number with other bytes
    │   │   ├── UnknownModuleVersionError  a rollback to a version the history does not keep
    │   │   └── NoRollbackTargetError   a rollback with no other kept version to go to
    │   ├── ModuleCompileError          wasm failed to compile or link
    │   └── InvocationError             one invocation failed; the node is unaffected
    │       ├── GuestTrapError          the guest trapped (unreachable, bad pointer, ...)
    │       ├── OutOfFuelError          the CPU budget ran out
    │       ├── DeadlineExceededError   the wall-time budget ran out
    │       ├── MemoryLimitError        the guest asked for more memory than allowed
    │       ├── OutputTooLargeError     the guest wrote more output than allowed
    │       ├── GuestStatusError        the entry returned a non-zero status
    │       ├── HostBugError            a host function failed unexpectedly (the guest traps)
    │       ├── BusyError               the module runs all the invocations it may at once; retry
    │       └── ClientGoneError         refused before it ran: its client left while it queued
    │   ├── HostCallRefused             inside a host function: return a status to the guest
    │   └── GuestFault                  inside a host function: trap with a wrapped error
    ├── SyncError                       peer sync
    │   ├── ProtocolError               malformed, oversized or unexpected frame
    │   │   ├── MalformedFrameError     not msgpack, or not of its frame's schema
    │   │   ├── OversizedFrameError     over the frame size limit
    │   │   ├── UnexpectedFrameError    a frame the protocol does not allow here
    │   │   ├── StalePeerError          a peer behind history this node collected
    │   │   └── RateLimitedError        frames or new documents faster than the limits
    │   ├── ConnectionDeclinedError     a connection ended for a reason not the peer's fault
    │   │   └── MeshFullError           an inbound link refused: the bounded mesh is full here
    │   ├── PeerGoneError               the peer closed the connection
    │   ├── PeerRefusedError            peer failed authentication or cluster check
    │   ├── ClusterCAError              CA / certificate material missing or invalid
    │   ├── NatsLinkError               the NATS link cannot be set up (servers, credentials)
    │   └── UnknownMemberError          forget of a replica id that is no cluster member
    ├── ClientError                     talking to a running node's HTTP API
    │   ├── NodeAPIError                the node answered with an error
    │   └── NodeUnreachableError        no node answered at the URL
    ├── NodeStartError                  a node process exited or did not become ready
    ├── WorkerLinkError                 an invocation worker lost its socket to the node
    ├── InvalidJSONError                JSON input that is not strict JSON (names the input)
    │   ├── DuplicateKeyError           an object repeats a key (names the key and its path)
    │   └── NonFiniteNumberError        NaN, Infinity or -Infinity, which are not JSON
    ├── TokenError                      client tokens (scoped /yjs credentials)
    │   ├── InvalidGrantError           a grant that cannot be made (doc pattern, expiry, flags)
    │   ├── UnknownTokenError           no token with that id was issued by this node
    │   ├── InvalidTokenError           not a token this node issued (malformed, wrong secret)
    │   ├── TokenExpiredError           the token's expiry has passed
    │   ├── TokenRevokedError           the token was revoked
    │   └── TokenScopeError             the token does not grant this document or action
    ├── ToolchainError                  no usable compiler for a guest module, or its build failed
    ├── BadRequestError                 an API request body or parameter that cannot be taken
    └── ConfigError                     bad configuration or command-line values
        ├── PolicyReloadError           a trust policy reload refused; the running policy stays
        ├── ConfirmationRequiredError   a destructive command not confirmed (no --yes, no terminal)
        ├── ForeignDataDirError         a non-empty directory that is not an edgestate one
        ├── ListenError                 the API or sync listener cannot bind its host:port
        ├── DataDirError                the data directory cannot be created or written
        └── CommandError                a CLI command's own refusal (code given per refusal)
"""

from __future__ import annotations

import errno
import socket


class EdgestateError(Exception):
    """Base of every error edgestate raises on purpose."""

    code = "edgestate_error"


# --- store ---------------------------------------------------------------------


class StoreError(EdgestateError):
    """A failure of the durable state layer."""

    code = "store_error"


class InvalidKeyError(StoreError):
    """A key that is not a non-empty UTF-8 string within the size limit."""

    code = "invalid_key"


class ValueTooLargeError(StoreError):
    """A value over the store's configured size limit."""

    code = "value_too_large"


class InvalidDocumentNameError(StoreError):
    """A document name outside the allowed alphabet or length."""

    code = "invalid_document_name"


class SystemDocumentError(StoreError):
    """A user-facing write (admin API, CLI, ``/yjs``, a manifest grant) to one of the
    node's own documents (``_`` prefix); only the node's own paths write those."""

    code = "system_document"


class UnknownDocumentError(StoreError):
    """A document that was never created in this store."""

    code = "unknown_document"


class WrongTypeError(StoreError):
    """An operation that does not fit the stored value's type (counter vs bytes)."""

    code = "wrong_type"


class InvalidUpdateError(StoreError):
    """CRDT update bytes that are corrupt or not a Yjs update at all."""

    code = "invalid_update"


class UnsupportedUpdateEncodingError(InvalidUpdateError):
    """A Yjs v2-encoded update; edgestate speaks the v1 encoding only."""

    code = "unsupported_update_encoding"


class StaleReplicaError(InvalidUpdateError):
    """An update or state vector from a replica behind history this node collected.

    Only a replica that missed the cluster's stable frontier (a forgotten member,
    a Yjs client that was offline through it) can send one; it must drop its copy
    of the document and sync afresh.
    """

    code = "stale_replica"


class InvalidCursorError(StoreError):
    """A scan cursor that this store did not issue (or that was tampered with)."""

    code = "invalid_cursor"


class FormatVersionError(StoreError):
    """A data directory written by an incompatible on-disk format version."""

    code = "format_version"


class StoreLockedError(StoreError):
    """Another process holds the data directory open for writing."""

    code = "store_locked"


class StoreMissingError(StoreError):
    """A data directory that holds a node's files but whose store is missing or empty.

    Starting afresh there would silently drop every acknowledged write; it takes an
    explicit ``edgestate node --new-store``.
    """

    code = "store_missing"


class StoreCorruptError(StoreError):
    """A store file that is damaged: truncated, bad meta or B-tree pages, or entries
    the store's decoders refuse. Restore from a backup (README, backup and restore)."""

    code = "store_corrupt"


class StoreClosedError(StoreError):
    """An operation on a store that was already closed."""

    code = "store_closed"


class ReadOnlyStoreError(StoreError):
    """A write attempted through a store opened read-only."""

    code = "read_only"


# --- runtime -------------------------------------------------------------------


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
    """The invocation ran past its wall-time budget."""

    code = "deadline_exceeded"


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


# --- sync ----------------------------------------------------------------------


class SyncError(EdgestateError):
    """A failure in peer sync."""

    code = "sync_error"


class ProtocolError(SyncError):
    """A malformed, oversized or unexpected frame from a peer."""

    code = "protocol_error"


class MalformedFrameError(ProtocolError):
    """A frame that is not valid msgpack or does not match its schema."""

    code = "malformed_frame"


class OversizedFrameError(ProtocolError):
    """A frame over the configured size limit."""

    code = "oversized_frame"


class UnexpectedFrameError(ProtocolError):
    """A well-formed frame arriving when the protocol does not allow it."""

    code = "unexpected_frame"


class StalePeerError(ProtocolError):
    """A peer behind history this node garbage-collected: it must resync afresh."""

    code = "stale_replica"


class RateLimitedError(ProtocolError):
    """A peer sending frames (or creating documents) faster than its limits."""

    code = "rate_limited"


class ConnectionDeclinedError(SyncError):
    """A connection this side ends for a reason that is not the peer's fault
    (a duplicate, or ourselves); ``permanent`` stops redialing that address."""

    code = "connection_declined"

    def __init__(self, reason: str, *, permanent: bool = False) -> None:
        super().__init__(reason)
        self.permanent = permanent


class MeshFullError(ConnectionDeclinedError):
    """An inbound link this node does not take: it holds as many as ``sync.max_peers``
    allows (see docs/mesh.md). Closed with 1013; the dialer picks another peer."""

    code = "mesh_full"


class PeerGoneError(SyncError):
    """The peer closed the connection (or it dropped)."""

    code = "peer_gone"


class PeerRefusedError(SyncError):
    """A peer that failed authentication or belongs to another cluster."""

    code = "peer_refused"


class ClusterCAError(SyncError):
    """Cluster CA or node certificate material that is missing or invalid."""

    code = "cluster_ca"


class NatsLinkError(SyncError):
    """The NATS link between sites cannot be set up: no server reachable,
    credentials or TLS refused, or the JetStream stream cannot be created."""

    code = "nats_link"


class UnknownMemberError(SyncError):
    """A forget of a replica id that is not a cluster member of this node.

    Refused rather than recorded: a typo would otherwise leave a permanent
    entry that refuses, as stale, a replica that never existed yet.
    """

    code = "unknown_member"


# --- client and developer tools ----------------------------------------------------


class ClientError(EdgestateError):
    """A failure talking to a running node's HTTP API."""

    code = "client_error"


class NodeAPIError(ClientError):
    """The node answered with an error (its code and message are kept)."""

    code = "api_error"

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{message} (HTTP {status})")
        self.status = status
        self.code = code


class NodeUnreachableError(ClientError):
    """No node answered at the URL."""

    code = "unreachable"


class NodeStartError(EdgestateError):
    """A node process exited or did not become ready; carries its log."""

    code = "node_start_failed"


class WorkerLinkError(EdgestateError):
    """An invocation worker lost its socket to the node (the node is closing or gone).

    The invocation's writes were not acknowledged: they may or may not have
    committed, as with any write whose answer never came.
    """

    code = "node_link_lost"


# --- JSON input (edgestate.jsonstrict) -------------------------------------------


class InvalidJSONError(EdgestateError):
    """JSON input (manifest, trust policy, API body...) that is not strict JSON.

    The message names the input and where in it the fault is.
    """

    code = "invalid_json"


class DuplicateKeyError(InvalidJSONError):
    """A JSON object repeating a key: readers disagree on which copy counts."""

    code = "duplicate_json_key"


class NonFiniteNumberError(InvalidJSONError):
    """``NaN``, ``Infinity`` or ``-Infinity`` in JSON input (not JSON per RFC 8259)."""

    code = "non_finite_json_number"


# --- client tokens -----------------------------------------------------------------


class TokenError(EdgestateError):
    """A client token could not be made, found or used."""

    code = "token_error"


class InvalidGrantError(TokenError):
    """A token grant that cannot be made: bad document pattern, expiry or flag mix."""

    code = "invalid_grant"


class UnknownTokenError(TokenError):
    """No client token with that id was issued by this node."""

    code = "unknown_token"


class InvalidTokenError(TokenError):
    """A credential that is neither the admin token nor a client token of this node."""

    code = "invalid_token"


class TokenExpiredError(TokenError):
    """A client token used after its expiry."""

    code = "token_expired"


class TokenRevokedError(TokenError):
    """A client token used after ``edgestate token revoke``."""

    code = "token_revoked"


class TokenScopeError(TokenError):
    """A valid client token used for a document or action it does not grant."""

    code = "token_scope"


# --- module toolchains (edgestate.guest.toolchains) --------------------------------


class ToolchainError(EdgestateError):
    """No usable compiler for a guest module's language (rustc without the
    wasm32 target, no ``asc``, no ``ziglang``), or a build it ran failed; the
    message says which toolchains were tried and how to install one."""

    code = "toolchain_unavailable"


# --- node API ----------------------------------------------------------------------


class BadRequestError(EdgestateError):
    """A request the API cannot take: a body that is not JSON, nested too deep or of
    the wrong shape, or a parameter out of its range. Answered with a 400."""

    code = "bad_request"


# --- config --------------------------------------------------------------------


class ConfigError(EdgestateError):
    """Bad configuration file contents or command-line values."""

    code = "config_error"


class PolicyReloadError(ConfigError):
    """A trust policy reload whose file is missing or invalid: the running policy stays."""

    code = "policy_reload_failed"


class ConfirmationRequiredError(ConfigError):
    """A destructive command (``undeploy``) run without ``--yes`` where nobody can be
    asked: standard input is not a terminal."""

    code = "confirmation_required"


class ForeignDataDirError(ConfigError):
    """A non-empty directory given as a data directory that is not an edgestate one
    (a checkout, a home directory): the node refuses to write its files into it."""

    code = "foreign_data_dir"


class ListenError(ConfigError):
    """A listener (the HTTP API or sync) that cannot bind its host and port: the
    port is in use, needs privileges, or the host is no address of this machine."""

    code = "listen_failed"

    def __init__(self, listener: str, host: str, port: int, reason: str) -> None:
        super().__init__(
            f"cannot listen for {listener} on {host}:{port}: {reason} "
            f"(choose another with --{listener.split()[0].lower()}-port or the config file)"
        )
        self.listener = listener
        self.host = host
        self.port = port

    @classmethod
    def from_os_error(cls, listener: str, host: str, port: int, exc: OSError) -> ListenError:
        """The error for ``exc``, raised by binding ``host:port``, in plain words."""
        reasons = {
            errno.EADDRINUSE: "the port is already in use (another node, or another program)",
            errno.EACCES: "permission denied (ports below 1024 need privileges)",
            errno.EADDRNOTAVAIL: "the host is not an address of this machine",
        }
        if isinstance(exc, socket.gaierror):
            reason = f"cannot resolve the host ({exc.strerror or exc})"
        else:
            reason = reasons.get(exc.errno or 0) or exc.strerror or str(exc)
        return cls(listener, host, port, reason)


class DataDirError(ConfigError):
    """A data directory that cannot be created or written (a file in the way, no
    permission, a read-only file system)."""

    code = "data_dir"


class CommandError(ConfigError):
    """A command's own refusal, for checks that belong to the command line itself (a
    file it would overwrite, a manifest it cannot find), not to a layer below it.
    Its ``code`` is given per refusal (``file_exists``, ``manifest_missing``, ...)."""

    code = "command_failed"

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
