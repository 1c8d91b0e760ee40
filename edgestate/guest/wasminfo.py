"""What a built module carries, read from its bytes: size, custom sections,
initial memory pages and exports (``edgestate build`` reports them against the
manifest). A small reader of the wasm binary format's section headers; the
code itself is never decoded.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from edgestate.errors import ModuleCompileError

_MAGIC = b"\0asm\x01\0\0\0"
_CUSTOM, _IMPORT, _MEMORY, _EXPORT, _CODE, _DATA = 0, 2, 5, 7, 10, 11
_EXPORT_KINDS = {0: "func", 1: "table", 2: "memory", 3: "global"}


@dataclass(frozen=True)
class WasmInfo:
    """Facts about one module, for build reports and lean-module checks."""

    size: int
    code_bytes: int
    custom_sections: list[tuple[str, int]] = field(default_factory=list)  # (name, bytes)
    initial_pages: int | None = None  # of its own memory; None if it defines none
    exports: dict[str, str] = field(default_factory=dict)  # name -> kind
    imports: list[tuple[str, str]] = field(default_factory=list)  # (module, name)
    data_bytes: int = 0  # the data section: initial memory contents

    @property
    def exports_memory(self) -> bool:
        """Whether it exports ``memory`` (the host reads and writes through it)."""
        return self.exports.get("memory") == "memory"

    def exports_entry(self, entry: str) -> bool:
        """Whether ``entry`` is an exported function."""
        return self.exports.get(entry) == "func"


class _Reader:
    def __init__(self, data: bytes, pos: int = 0, end: int | None = None) -> None:
        self.data, self.pos, self.end = data, pos, len(data) if end is None else end

    def byte(self) -> int:
        if self.pos >= self.end:
            raise ModuleCompileError("not a wasm module: truncated")
        b = self.data[self.pos]
        self.pos += 1
        return b

    def uleb(self) -> int:
        result = shift = 0
        while True:
            b = self.byte()
            result |= (b & 0x7F) << shift
            shift += 7
            if b < 0x80:
                return result

    def name(self) -> str:
        n = self.uleb()
        raw = self.data[self.pos : self.pos + n]
        self.pos += n
        return raw.decode("utf-8", "replace")

    def limits(self) -> int:
        flags = self.byte()
        minimum = self.uleb()
        if flags & 1:
            self.uleb()
        return minimum


def inspect_wasm(data: bytes) -> WasmInfo:
    """Read the section headers of a wasm binary; ModuleCompileError if it is not one."""
    if data[:8] != _MAGIC:
        raise ModuleCompileError("not a wasm module (bad magic or version)")
    r = _Reader(data, 8)
    custom: list[tuple[str, int]] = []
    exports: dict[str, str] = {}
    imports: list[tuple[str, str]] = []
    pages: int | None = None
    code = data_size = 0
    while r.pos < len(data):
        section = r.byte()
        size = r.uleb()
        body = _Reader(data, r.pos, r.pos + size)
        if section == _CUSTOM:
            custom.append((body.name(), size))
        elif section == _MEMORY and body.uleb() > 0:
            pages = body.limits()
        elif section == _EXPORT:
            for _ in range(body.uleb()):
                name = body.name()
                kind = body.byte()
                body.uleb()
                exports[name] = _EXPORT_KINDS.get(kind, "other")
        elif section == _IMPORT:
            for _ in range(body.uleb()):
                module, name = body.name(), body.name()
                kind = body.byte()
                imports.append((module, name))
                if kind == 0:
                    body.uleb()
                elif kind == 1:
                    body.byte()
                    body.limits()
                elif kind == 2:
                    body.limits()
                else:
                    body.byte()
                    body.byte()
        elif section == _CODE:
            code = size
        elif section == _DATA:
            data_size = size
        r.pos += size
    return WasmInfo(len(data), code, custom, pages, exports, imports, data_size)
