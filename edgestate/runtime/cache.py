"""On-disk cache of compiled modules, so a node restart does not recompile.

Deserializing a compiled artifact executes code wasmtime trusts blindly, so an
entry is verified before wasmtime sees it. One file per (wasm hash, engine
fingerprint)::

    b"EDGESTATE-CWASM/1\\n" + header JSON + b"\\n" + artifact

where the header records the wasm's SHA-256, the engine fingerprint and the
artifact's SHA-256. An entry whose header does not match or whose artifact does
not hash to the recorded digest is corrupt: it is recompiled and replaced, never
loaded. Digests only catch corruption: with a ``key`` (a node keeps one in its
data directory) the header also carries an HMAC-SHA256 of those fields, so an
entry planted by whoever can write the cache directory, but not read the key, is
refused too. Entries are written to a temporary file and renamed into place, so a
crash leaves either the old entry or the new one.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import wasmtime

from edgestate.errors import ModuleCompileError
from edgestate.runtime.engine import engine_fingerprint

log = logging.getLogger(__name__)

_MAGIC = b"EDGESTATE-CWASM/1\n"


@dataclass(slots=True)
class CacheStats:
    """How the cache has answered since it was opened."""

    hits: int = 0
    misses: int = 0
    corrupt: int = 0


WASM_MAGIC = b"\0asm"


def compile_module(engine: wasmtime.Engine, wasm: bytes) -> wasmtime.Module:
    """Compile ``wasm``; :class:`ModuleCompileError` if it is not valid wasm."""
    if not wasm.startswith(WASM_MAGIC):
        # wasmtime would also take WAT text; only binaries are signed and shipped.
        raise ModuleCompileError(
            f"not a WebAssembly binary: it starts with {wasm[:4]!r}, not {WASM_MAGIC!r} "
            "(sign and deploy the compiled .wasm, not its source)"
        )
    try:
        return wasmtime.Module(engine, wasm)
    except wasmtime.WasmtimeError as exc:
        raise ModuleCompileError(f"wasm failed to compile: {exc}") from exc


class ModuleCache:
    """Compiled modules of one engine, cached under ``directory``."""

    def __init__(
        self,
        engine: wasmtime.Engine,
        directory: Path | None,
        fingerprint: str | None = None,
        key: bytes | None = None,
    ) -> None:
        self.engine = engine
        self.directory = directory
        self._key = key
        self.fingerprint = fingerprint or engine_fingerprint()
        self.stats = CacheStats()
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)

    def path_for(self, wasm_sha256: str) -> Path | None:
        """Where the entry for a wasm hash lives (None without a directory)."""
        if self.directory is None:
            return None
        return self.directory / f"{wasm_sha256}-{self.fingerprint[:16]}.cwasm"

    def load(self, wasm: bytes, wasm_sha256: str | None = None) -> wasmtime.Module:
        """The compiled module for ``wasm``, from the cache if a sound entry exists."""
        digest = wasm_sha256 or hashlib.sha256(wasm).hexdigest()
        path = self.path_for(digest)
        if path is None:
            return compile_module(self.engine, wasm)
        module = self._read(path, digest)
        if module is not None:
            self.stats.hits += 1
            return module
        self.stats.misses += 1
        module = compile_module(self.engine, wasm)
        self._write(path, digest, bytes(module.serialize()))
        return module

    def _read(self, path: Path, digest: str) -> wasmtime.Module | None:
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("cannot read cached module %s: %s", path, exc)
            return None
        artifact = self._verified_artifact(data, digest)
        if artifact is None:
            self.stats.corrupt += 1
            log.warning("cached module %s is corrupt or stale; recompiling", path.name)
            return None
        try:
            return wasmtime.Module.deserialize(self.engine, artifact)
        except wasmtime.WasmtimeError as exc:
            self.stats.corrupt += 1
            log.warning("cached module %s was refused by wasmtime (%s); recompiling", path, exc)
            return None

    def _verified_artifact(self, data: bytes, digest: str) -> bytes | None:
        if not data.startswith(_MAGIC):
            return None
        end = data.find(b"\n", len(_MAGIC))
        if end < 0:
            return None
        try:
            header = json.loads(data[len(_MAGIC) : end])
        except ValueError:
            return None
        artifact = data[end + 1 :]
        if (
            not isinstance(header, dict)
            or header.get("wasm_sha256") != digest
            or header.get("engine") != self.fingerprint
            or header.get("artifact_sha256") != hashlib.sha256(artifact).hexdigest()
        ):
            return None
        if self._key is not None and not hmac.compare_digest(
            str(header.get("mac", "")), self._mac(digest, header["artifact_sha256"])
        ):
            return None
        return artifact

    def _mac(self, digest: str, artifact_sha256: str) -> str:
        assert self._key is not None
        message = f"{digest}\n{self.fingerprint}\n{artifact_sha256}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def _write(self, path: Path, digest: str, artifact: bytes) -> None:
        artifact_sha256 = hashlib.sha256(artifact).hexdigest()
        fields = {
            "wasm_sha256": digest,
            "engine": self.fingerprint,
            "artifact_sha256": artifact_sha256,
        }
        if self._key is not None:
            fields["mac"] = self._mac(digest, artifact_sha256)
        header = json.dumps(fields).encode()
        try:
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".cwasm")
            with os.fdopen(fd, "wb") as f:
                f.write(_MAGIC + header + b"\n" + artifact)
            os.replace(tmp, path)
        except OSError as exc:
            # A cache that cannot be written costs a recompile next start, nothing more.
            log.warning("cannot write cached module %s: %s", path, exc)
