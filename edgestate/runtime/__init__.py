"""Running signed WebAssembly modules against the store, one sandbox per request.

engine.py    engine settings, RuntimeConfig, the epoch ticker
cache.py     verified on-disk cache of compiled modules
manifest.py  the module manifest
signing.py   publisher keys, module signatures
policy.py    the trust policy: publishers and the ceilings they may grant
sandbox.py   the per-request instance, its limits and timings
runtime.py   Runtime: load, invoke, ainvoke
"""

from edgestate.runtime.cache import ModuleCache
from edgestate.runtime.engine import RuntimeConfig
from edgestate.runtime.manifest import Limits, Manifest, parse_manifest
from edgestate.runtime.policy import Grant, Publisher, TrustPolicy
from edgestate.runtime.runtime import (
    InvocationResult,
    LoadedModule,
    Runtime,
    bundle_paths,
    read_bundle,
)
from edgestate.runtime.sandbox import Execution
from edgestate.runtime.signing import (
    generate_key,
    load_private_key,
    raw_public_key,
    save_private_key,
    sign_module,
)

__all__ = [
    "Execution",
    "Grant",
    "InvocationResult",
    "Limits",
    "LoadedModule",
    "Manifest",
    "ModuleCache",
    "Publisher",
    "Runtime",
    "RuntimeConfig",
    "TrustPolicy",
    "bundle_paths",
    "generate_key",
    "load_private_key",
    "parse_manifest",
    "raw_public_key",
    "read_bundle",
    "save_private_key",
    "sign_module",
]
