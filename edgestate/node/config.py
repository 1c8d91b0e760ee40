"""Node configuration: a TOML file (schema: schemas/config.schema.json) plus overrides.

Every section maps onto the frozen config dataclass of the layer it tunes
(``StoreConfig``, ``RuntimeConfig``, ``SyncConfig``); this module only reads,
checks and combines them. Unknown keys and wrong types are refused with the
dotted path of the offending key, so a typo never silently falls back to a default.

With no file at all a node works on one machine: data under ``./edgestate-data``,
API and sync on 127.0.0.1 only, mDNS discovery on (bound to loopback), insecure
sync (it says so loudly) until a cluster CA is configured.
"""

from __future__ import annotations

import dataclasses
import enum
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from edgestate.errors import ConfigError
from edgestate.runtime import RuntimeConfig
from edgestate.store import Durability, GcMode, StoreConfig
from edgestate.sync.config import DEFAULT_PORT as SYNC_PORT
from edgestate.sync.config import SyncConfig, TLSFiles

DEFAULT_API_PORT = 7474


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiConfig:
    """The HTTP API (invocations, admin, metrics)."""

    host: str = "127.0.0.1"
    port: int = DEFAULT_API_PORT
    # One invocation's input; larger bodies get 413 before the module runs.
    max_body_bytes: int = 1 << 20
    # Admin bodies carry module bundles (wasm + manifest + signature), base64.
    max_admin_body_bytes: int = 8 << 20
    # In-flight invocations get this long to finish at shutdown.
    shutdown_grace_s: float = 10.0
    # A quiet watch stream is probed this often (an SSE comment): aiohttp only
    # notices a client that left when something is written to it.
    watch_ping_s: float = 15.0
    # Serve HTTPS with the node's cluster certificate (needs sync TLS files). A
    # client presenting a certificate of the cluster is then admin without a token.
    tls: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeConfig:
    """Everything a node needs; see the module docstring for the defaults."""

    data_dir: Path = Path("edgestate-data")
    api: ApiConfig = field(default_factory=ApiConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    sync: SyncConfig = field(default_factory=lambda: SyncConfig(insecure=True))
    # Trust policy JSON (schemas/trust-policy.schema.json). None: DATA/trust-policy.json
    # if present, else no publisher is trusted and every deploy is refused.
    trust_policy: Path | None = None
    log_format: str = "text"
    log_level: str = "info"

    @property
    def policy_path(self) -> Path:
        """Where the trust policy is read from."""
        return self.trust_policy or self.data_dir / "trust-policy.json"

    @property
    def store_dir(self) -> Path:
        """The LMDB environment's directory."""
        return self.data_dir / STORE_SUBDIR


# A node keeps its LMDB environment in DATA/store, beside its token and caches.
STORE_SUBDIR = "store"


def store_dir_of(data: Path) -> Path:
    """The store inside a node's data directory, or ``data`` itself if it is a store.

    Lets the CLI take either ``--data`` a node was started with or a bare store.
    """
    nested = data / STORE_SUBDIR
    return nested if (nested / "data.mdb").exists() else data


# Which TOML keys exist, and their types: the code side of schemas/config.schema.json
# (a test checks the two agree).
_SECTIONS: dict[str, dict[str, type | tuple[type, ...]]] = {
    "": {"data_dir": str, "trust_policy": str, "log_format": str, "log_level": str},
    "api": {
        "host": str,
        "port": int,
        "max_body_bytes": int,
        "max_admin_body_bytes": int,
        "shutdown_grace_s": (int, float),
        "watch_ping_s": (int, float),
        "tls": bool,
    },
    "store": {
        "durability": str,
        "batched_flush_ms": int,
        "map_size": int,
        "max_key_bytes": int,
        "max_value_bytes": int,
        "idle_evict_s": (int, float),
        "evict_max_keys": int,
        "compact_min_log_bytes": int,
        "gc": str,
    },
    "runtime": {
        "cache_dir": str,
        "epoch_tick_ms": (int, float),
        "max_input_bytes": int,
        "max_instances": int,
    },
    "sync": {
        "host": str,
        "port": int,
        "insecure": bool,
        "cluster_id": str,
        "node_id": str,
        "static_peers": list,
        "local_only": list,
        "mdns": bool,
        "anti_entropy_s": (int, float),
        "gc_round_s": (int, float),
        "gc_grace_s": (int, float),
        "ca_cert": str,
        "cert": str,
        "key": str,
        "crl": str,
    },
}


# Settings that are paths (resolved against the config file's directory).
_PATH_SETTINGS = frozenset({"data_dir", "trust_policy", "runtime.cache_dir"})


def config_keys() -> dict[str, set[str]]:
    """Section -> accepted keys (for the schema test)."""
    return {section: set(keys) for section, keys in _SECTIONS.items()}


def _check(raw: Mapping[str, Any]) -> None:
    for key, value in raw.items():
        if key in _SECTIONS and key:
            if not isinstance(value, dict):
                raise ConfigError(f"[{key}] must be a table")
            _check_section(key, value)
        else:
            _check_section("", {key: value})


def _check_section(section: str, values: Mapping[str, Any]) -> None:
    allowed = _SECTIONS[section]
    for key, value in values.items():
        where = f"{section}.{key}" if section else key
        if key not in allowed:
            raise ConfigError(f"unknown setting {where!r}; known: {', '.join(sorted(allowed))}")
        want = allowed[key]
        if isinstance(value, bool) and want is not bool:
            raise ConfigError(f"{where} must be {_name(want)}, got a boolean")
        if not isinstance(value, want):
            raise ConfigError(f"{where} must be {_name(want)}, got {type(value).__name__}")


def _name(want: type | tuple[type, ...]) -> str:
    if isinstance(want, tuple):
        return " or ".join(t.__name__ for t in want)
    return {"str": "a string", "int": "an integer", "bool": "true or false", "list": "a list"}.get(
        want.__name__, want.__name__
    )


def read_toml(path: Path) -> dict[str, Any]:
    """Parse a config file, naming the file and the problem on failure."""
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError as exc:
        raise ConfigError(f"config file {path} does not exist") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc


def load_config(path: Path | None = None, overrides: Mapping[str, Any] | None = None) -> NodeConfig:
    """Build a NodeConfig from an optional TOML file and dotted-key overrides.

    ``overrides`` maps ``"section.key"`` (or a top-level key) to a value, the form
    the command line produces (``--api-port 8080`` -> ``{"api.port": 8080}``).
    """
    raw: dict[str, Any] = read_toml(path) if path is not None else {}
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        if dotted in _PATH_SETTINGS and isinstance(value, str):
            # Paths given on the command line are relative to where it was typed,
            # not to the config file's directory (found in review).
            value = str(Path(value).expanduser().absolute())
        section, _, key = dotted.rpartition(".")
        (raw.setdefault(section, {}) if section else raw)[key] = value
    _check(raw)
    return _build(raw, base=path.parent if path is not None else Path.cwd())


def _path(value: str, base: Path) -> Path:
    p = Path(value).expanduser()
    return p if p.is_absolute() else base / p


E = TypeVar("E", bound=enum.Enum)


def _choice(kind: type[E], value: object, name: str) -> E:
    """``kind(value)``, or a ConfigError listing the accepted values."""
    try:
        return kind(value)
    except ValueError:
        accepted = [m.value for m in kind]
        names = ", ".join(repr(v) for v in accepted[:-1]) + f" or {accepted[-1]!r}"
        raise ConfigError(f"{name} must be {names}, got {value!r}") from None


def _build(raw: dict[str, Any], base: Path) -> NodeConfig:
    data_dir = _path(raw.get("data_dir", "edgestate-data"), base)
    api = ApiConfig(**raw.get("api", {}))
    _positive(api.port, "api.port", allow_zero=True)

    store_raw = dict(raw.get("store", {}))
    for key, kind in (("durability", Durability), ("gc", GcMode)):
        if key in store_raw:
            store_raw[key] = _choice(kind, store_raw[key], f"store.{key}")
    store = StoreConfig(**store_raw)

    runtime_raw = dict(raw.get("runtime", {}))
    runtime_raw["cache_dir"] = _path(runtime_raw.get("cache_dir", "module-cache"), data_dir)
    runtime = dataclasses.replace(RuntimeConfig(), **runtime_raw)

    sync_raw = dict(raw.get("sync", {}))
    tls_keys = {k: sync_raw.pop(k) for k in ("ca_cert", "cert", "key", "crl") if k in sync_raw}
    tls: TLSFiles | None = None
    if tls_keys:
        missing = {"ca_cert", "cert", "key"} - set(tls_keys)
        if missing:
            raise ConfigError(f"sync TLS needs ca_cert, cert and key; missing {sorted(missing)}")
        tls = TLSFiles(
            ca_cert=_path(tls_keys["ca_cert"], base),
            cert=_path(tls_keys["cert"], base),
            key=_path(tls_keys["key"], base),
            crl=_path(tls_keys["crl"], base) if "crl" in tls_keys else None,
        )
    if "static_peers" in sync_raw:
        sync_raw["static_peers"] = tuple(str(p) for p in sync_raw["static_peers"])
    if "local_only" in sync_raw:
        sync_raw["local_only"] = frozenset(str(d) for d in sync_raw["local_only"])
    # Without TLS material the node can only run insecure; with it, secure unless asked.
    sync_raw.setdefault("insecure", tls is None)
    sync_raw.setdefault("port", SYNC_PORT)
    if sync_raw["insecure"] and tls is not None:
        raise ConfigError("sync.insecure = true contradicts the configured TLS files")
    if not sync_raw["insecure"] and tls is None:
        raise ConfigError("sync.insecure = false needs sync.ca_cert, sync.cert and sync.key")
    sync = SyncConfig(tls=tls, **sync_raw)

    if api.tls and tls is None:
        raise ConfigError("api.tls = true needs the cluster TLS files (sync.ca_cert, cert, key)")
    log_format = raw.get("log_format", "text")
    if log_format not in ("text", "json"):
        raise ConfigError(f"log_format must be 'text' or 'json', got {log_format!r}")
    log_level = raw.get("log_level", "info")
    if log_level not in ("debug", "info", "warning", "error"):
        raise ConfigError(f"log_level must be debug, info, warning or error, got {log_level!r}")
    policy = raw.get("trust_policy")
    return NodeConfig(
        data_dir=data_dir,
        api=api,
        store=store,
        runtime=runtime,
        sync=sync,
        trust_policy=_path(policy, base) if policy else None,
        log_format=log_format,
        log_level=log_level,
    )


def _positive(value: int, where: str, *, allow_zero: bool = False) -> None:
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(f"{where} must be positive, got {value}")
