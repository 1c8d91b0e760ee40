"""The edgestate error tree.

Every error the library raises on purpose is an ``EdgestateError``; callers at an
edge (the CLI, the HTTP API, the host ABI) catch that one base class and turn it
into an exit code, a JSON error or a negative status for the guest. Each class
carries a stable ``code`` string, used by the CLI ``--json`` output and the API.

The classes live in one submodule per section of the tree (``base``, ``store``,
``runtime``, ``sync``, ``client``, ``jsoninput``, ``tokens``, ``toolchains``,
``api``, ``config``) and are imported from here, never from the submodules.

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
    │   │   ├── AssemblyBusyError       the node's budget for diffs in parts stayed full
    │   │   ├── UnexpectedFrameError    a frame the protocol does not allow here
    │   │   ├── StalePeerError          a peer behind history this node collected
    │   │   └── RateLimitedError        frames or new documents faster than the limits
    │   ├── ConnectionDeclinedError     a connection ended for a reason not the peer's fault
    │   │   └── MeshFullError           an inbound link refused: the bounded mesh is full here
    │   ├── PeerGoneError               the peer closed the connection
    │   ├── PeerRefusedError            peer failed authentication or cluster check
    │   ├── ClusterCAError              CA / certificate material missing or invalid
    │   ├── NatsLinkError               the NATS link cannot be set up (servers, credentials)
    │   │   ├── NatsTLSError            NATS's TLS handshake failed (server or client certificate)
    │   │   └── NatsAuthError           the NATS server refused the credentials
    │   └── UnknownMemberError          forget of a replica id that is no cluster member
    ├── ClientError                     talking to a running node's HTTP API
    │   ├── NodeAPIError                the node answered with an error
    │   └── NodeUnreachableError        no node answered at the URL
    ├── NodeStartError                  a node process exited or did not become ready
    ├── WorkerLinkError                 an invocation worker lost its socket to the node
    │   ├── NodeUnresponsiveError       its link is up but the node's heartbeat is late
    │   └── HandoffError                a /yjs connection not handed to the node (relayed instead)
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

from edgestate.errors.api import (
    BadRequestError,
)
from edgestate.errors.base import (
    EdgestateError,
)
from edgestate.errors.client import (
    ClientError,
    HandoffError,
    NodeAPIError,
    NodeStartError,
    NodeUnreachableError,
    NodeUnresponsiveError,
    WorkerLinkError,
)
from edgestate.errors.config import (
    CommandError,
    ConfigError,
    ConfirmationRequiredError,
    DataDirError,
    ForeignDataDirError,
    ListenError,
    PolicyReloadError,
)
from edgestate.errors.jsoninput import (
    DuplicateKeyError,
    InvalidJSONError,
    NonFiniteNumberError,
)
from edgestate.errors.runtime import (
    BusyError,
    ClientGoneError,
    DeadlineExceededError,
    GuestFault,
    GuestStatusError,
    GuestTrapError,
    HostBugError,
    HostCallRefused,
    InvocationError,
    ManifestError,
    MemoryLimitError,
    ModuleCompileError,
    ModuleDowngradeError,
    ModuleNotFoundError_,
    ModuleOwnershipError,
    ModuleVersionError,
    ModuleVersionReusedError,
    NoRollbackTargetError,
    OutOfFuelError,
    OutputTooLargeError,
    PolicyViolationError,
    RuntimeFault,
    SignatureError,
    SignatureOverwriteError,
    UnknownModuleVersionError,
    UntrustedPublisherError,
)
from edgestate.errors.store import (
    FormatVersionError,
    InvalidCursorError,
    InvalidDocumentNameError,
    InvalidKeyError,
    InvalidUpdateError,
    ReadOnlyStoreError,
    StaleReplicaError,
    StoreClosedError,
    StoreCorruptError,
    StoreError,
    StoreLockedError,
    StoreMissingError,
    SystemDocumentError,
    UnknownDocumentError,
    UnsupportedUpdateEncodingError,
    ValueTooLargeError,
    WrongTypeError,
)
from edgestate.errors.sync import (
    AssemblyBusyError,
    ClusterCAError,
    ConnectionDeclinedError,
    MalformedFrameError,
    MeshFullError,
    NatsAuthError,
    NatsLinkError,
    NatsTLSError,
    OversizedFrameError,
    PeerGoneError,
    PeerRefusedError,
    ProtocolError,
    RateLimitedError,
    StalePeerError,
    SyncError,
    UnexpectedFrameError,
    UnknownMemberError,
)
from edgestate.errors.tokens import (
    InvalidGrantError,
    InvalidTokenError,
    TokenError,
    TokenExpiredError,
    TokenRevokedError,
    TokenScopeError,
    UnknownTokenError,
)
from edgestate.errors.toolchains import (
    ToolchainError,
)

__all__ = [
    "AssemblyBusyError",
    "BadRequestError",
    "BusyError",
    "ClientError",
    "ClientGoneError",
    "ClusterCAError",
    "CommandError",
    "ConfigError",
    "ConfirmationRequiredError",
    "ConnectionDeclinedError",
    "DataDirError",
    "DeadlineExceededError",
    "DuplicateKeyError",
    "EdgestateError",
    "ForeignDataDirError",
    "FormatVersionError",
    "GuestFault",
    "GuestStatusError",
    "GuestTrapError",
    "HandoffError",
    "HostBugError",
    "HostCallRefused",
    "InvalidCursorError",
    "InvalidDocumentNameError",
    "InvalidGrantError",
    "InvalidJSONError",
    "InvalidKeyError",
    "InvalidTokenError",
    "InvalidUpdateError",
    "InvocationError",
    "ListenError",
    "MalformedFrameError",
    "ManifestError",
    "MemoryLimitError",
    "MeshFullError",
    "ModuleCompileError",
    "ModuleDowngradeError",
    "ModuleNotFoundError_",
    "ModuleOwnershipError",
    "ModuleVersionError",
    "ModuleVersionReusedError",
    "NatsAuthError",
    "NatsLinkError",
    "NatsTLSError",
    "NoRollbackTargetError",
    "NodeAPIError",
    "NodeStartError",
    "NodeUnreachableError",
    "NodeUnresponsiveError",
    "NonFiniteNumberError",
    "OutOfFuelError",
    "OutputTooLargeError",
    "OversizedFrameError",
    "PeerGoneError",
    "PeerRefusedError",
    "PolicyReloadError",
    "PolicyViolationError",
    "ProtocolError",
    "RateLimitedError",
    "ReadOnlyStoreError",
    "RuntimeFault",
    "SignatureError",
    "SignatureOverwriteError",
    "StalePeerError",
    "StaleReplicaError",
    "StoreClosedError",
    "StoreCorruptError",
    "StoreError",
    "StoreLockedError",
    "StoreMissingError",
    "SyncError",
    "SystemDocumentError",
    "TokenError",
    "TokenExpiredError",
    "TokenRevokedError",
    "TokenScopeError",
    "ToolchainError",
    "UnexpectedFrameError",
    "UnknownDocumentError",
    "UnknownMemberError",
    "UnknownModuleVersionError",
    "UnknownTokenError",
    "UnsupportedUpdateEncodingError",
    "UntrustedPublisherError",
    "ValueTooLargeError",
    "WorkerLinkError",
    "WrongTypeError",
]

# Every class reports its public home: reprs, tracebacks and pickles name
# ``edgestate.errors.X`` as they did before the tree was split into submodules.
for _name in __all__:
    globals()[_name].__module__ = __name__
del _name
