"""Whether a module is lean enough to deploy: the one place that judges it.

Every deploy ships the whole wasm to every node of the cluster (as one
replicated value), so bytes the code never needs cost sync time on every node,
on every deploy. Two rules, each a warning (never a refusal: a publisher may
have reasons; the trust policy's ``max_module_bytes`` is the hard cap):

- **Debug sections.** Any ``.debug_*`` (DWARF), ``sourceMappingURL`` or
  ``external_debug_info`` custom section is debugging info, warned about at any
  size. Other custom sections (``name``, ``producers``, ``target_features``, ...)
  are warned about once custom sections together pass
  :data:`CUSTOM_WARN_BYTES`: a few hundred bytes of function names are fine.
- **Far larger than its code needs.** A module over :data:`BLOAT_MIN_BYTES` whose
  size is more than :data:`BLOAT_RATIO` times its code plus data sections: the
  rest is not what runs.

``edgestate sign`` and ``edgestate deploy`` print these warnings.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgestate.guest.wasminfo import WasmInfo

# Custom sections that are always debugging info, whatever their size.
_DEBUG_PREFIX = ".debug_"
_DEBUG_NAMES = frozenset({"sourceMappingURL", "external_debug_info"})
# Under this, custom sections (function names, producers) are not worth a warning:
# a stripped release build of the examples carries a few hundred bytes of them.
CUSTOM_WARN_BYTES = 4 << 10
# A module over BLOAT_RATIO x (code + data) is mostly something else; under
# BLOAT_MIN_BYTES the headers and tables of a tiny module dominate, and the
# whole thing syncs in no time anyway.
BLOAT_RATIO = 4
BLOAT_MIN_BYTES = 16 << 10

STRIP_HINT = (
    "strip it: zig `-O ReleaseSmall -fstrip`; rust `-C strip=symbols -C debuginfo=0` "
    "(or `[profile.release] strip = true`); AssemblyScript `asc --optimize` without "
    "`--debug`, or `wasm-opt --strip-debug --strip-producers`; any module: "
    "`wasm-strip` (wabt)"
)


@dataclass(frozen=True)
class LeanWarning:
    """One reason a module ships more bytes than it runs."""

    code: str  # "debug_sections" or "oversized"
    message: str
    sections: tuple[tuple[str, int], ...] = ()  # (custom section name, bytes)

    def to_json(self) -> dict[str, object]:
        """The ``--json`` form (``schemas/cli/sign.schema.json``)."""
        return {
            "code": self.code,
            "message": self.message,
            "sections": [{"name": n, "bytes": b} for n, b in self.sections],
        }


def _is_debug(name: str) -> bool:
    return name.startswith(_DEBUG_PREFIX) or name in _DEBUG_NAMES


def lean_warnings(info: WasmInfo) -> list[LeanWarning]:
    """The warnings for a module described by ``info`` (empty: it is lean)."""
    warnings: list[LeanWarning] = []
    custom_total = sum(size for _, size in info.custom_sections)
    if custom_total > CUSTOM_WARN_BYTES or any(_is_debug(n) for n, _ in info.custom_sections):
        listed = ", ".join(f"{n} ({size} bytes)" for n, size in info.custom_sections)
        warnings.append(
            LeanWarning(
                "debug_sections",
                f"module carries {custom_total} bytes of debug/custom sections the node "
                f"never uses: {listed}; every node syncs them on every deploy; {STRIP_HINT}",
                tuple(info.custom_sections),
            )
        )
    needed = info.code_bytes + info.data_bytes
    if info.size > BLOAT_MIN_BYTES and info.size > BLOAT_RATIO * needed:
        warnings.append(
            LeanWarning(
                "oversized",
                f"module is {info.size} bytes, over {BLOAT_RATIO}x its code and data "
                f"({info.code_bytes} + {info.data_bytes} bytes); {STRIP_HINT}",
            )
        )
    return warnings
