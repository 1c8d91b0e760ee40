"""The host ABI guests call: import module ``edgestate`` over the store.

memory.py  the fast route: unchecked host functions, bounds-checked guest memory
kv.py      grants and the per-invocation write overlay
abi.py     error codes, the function table and their implementations
binding.py the trampolines that define the table on a linker, and ``bind``
"""

from edgestate.host.abi import FUNCTIONS, IMPORT_MODULE, ErrorCode, HostFunction, HostLimits

__all__ = ["FUNCTIONS", "IMPORT_MODULE", "ErrorCode", "HostFunction", "HostLimits"]
