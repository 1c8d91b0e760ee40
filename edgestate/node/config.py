"""Node configuration: a TOML file (schema: schemas/config.schema.json) plus overrides.

Every section maps onto the frozen config dataclass of the layer it tunes
(``ApiConfig``, ``StoreConfig``, ``RuntimeConfig``, ``SyncConfig``; nested ones
such as ``RuntimeConfig.host`` are sub-tables, ``[runtime.host]``), and its keys
and their types are derived from the dataclass fields (:mod:`edgestate.node.settings`),
so every field is settable. This module only reads, checks and combines them.
Unknown keys and wrong types are refused with the dotted path of the offending
key, so a typo never silently falls back to a default.

With no file at all a node works on one machine: data under ``./edgestate-data``,
API and sync on 127.0.0.1 only, mDNS discovery on (bound to loopback), insecure
sync (it says so loudly) until a cluster CA is configured.

Importing this module is light (the CLI does it for every command): the layers'
config dataclasses are imported on first use, since their packages pull in
pycrdt, wasmtime and the sync daemon.
"""

from __future__ import annotations

import difflib
import functools
import logging
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgestate.errors import ConfigError
from edgestate.node.event_loop import EVENT_LOOPS
from edgestate.node.settings import (
    ENV_PREFIX,
    Setting,
    check_value,
    choice,
    convert,
    env_name,
    env_value,
    resolve_path,
    settings_of,
)

if TYPE_CHECKING:
    from edgestate.runtime.engine import RuntimeConfig
    from edgestate.store import StoreConfig
    from edgestate.sync.config import SyncConfig, TLSFiles

DEFAULT_API_PORT = 7474

log = logging.getLogger(__name__)


def default_workers() -> int:
    """One invocation worker per core this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


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
    # Invocation worker processes (README, the process model): each serves
    # invocations on its own core. 0 runs them on the node's own event loop
    # (tests, tiny devices, a node used as a library).
    workers: int = field(default_factory=default_workers)
    # One info line per request on the edgestate.access logger (docs/observability.md):
    # off by default, since at invocation rates it is most of the log.
    access_log: bool = False
    # Started, loaded and fed every deploy, but idle until a worker dies: it then
    # serves in its place at once (a fresh one takes seconds on a loaded machine:
    # an interpreter, wasmtime, aiohttp, the modules). 0 saves its memory.
    spare_worker: bool = True
    # Fork workers from a process that imported their modules once (workers/zygote):
    # a worker then shares those pages (USS ~7 MB instead of ~38) and starts in
    # well under a second. False: each starts a fresh interpreter.
    fork_server: bool = True
    # One listening socket per worker, all bound to the API port with SO_REUSEPORT
    # (Linux): the kernel spreads new connections evenly over the workers. With one
    # shared accept queue, the worker that wakes first takes most keep-alive
    # connections (8 clients: nearly all on one worker). False, or where the
    # option does not exist: one shared queue (docs/workers.md).
    reuse_port: bool = True
    # The event loop of the node process and its workers: "auto" (uvloop when
    # importable, else asyncio's), "asyncio", or "uvloop" (asyncio's, logged, when
    # not importable). uvloop cut a worker's CPU per invocation by 8-14 % at 64
    # clients (docs/workers.md) and a Yjs relay hop by ~0.1 ms (docs/yjs.md).
    event_loop: str = "auto"


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeConfig:
    """Everything a node needs; see the module docstring for the defaults."""

    data_dir: Path = Path("edgestate-data")
    api: ApiConfig = field(default_factory=ApiConfig)
    store: StoreConfig = field(default_factory=lambda: _layer_configs()["StoreConfig"]())
    runtime: RuntimeConfig = field(default_factory=lambda: _layer_configs()["RuntimeConfig"]())
    sync: SyncConfig = field(default_factory=lambda: _layer_configs()["SyncConfig"](insecure=True))
    # Trust policy JSON (schemas/trust-policy.schema.json). None: DATA/trust-policy.json
    # if present, else no publisher is trusted and every deploy is refused.
    trust_policy: Path | None = None
    log_format: str = "text"
    log_level: str = "info"
    # Versions each module keeps for rollback (docs/rollback.md); at most
    # history.MAX_KEEP, since each is a whole bundle stored on every node.
    module_history: int = 5

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
    # A node's directory (it has a token) whose store is gone is still a node's:
    # the store it names is DATA/store, never a new one beside the token.
    node_dir = (nested / "data.mdb").exists() or (data / "admin.token").exists()
    return nested if node_dir else data


def _layer_configs() -> dict[str, type]:
    """The layers' config dataclasses, imported on first use (see the module docstring)."""
    from edgestate.runtime.engine import RuntimeConfig
    from edgestate.store import StoreConfig
    from edgestate.sync.config import SyncConfig, TLSFiles

    return {
        "RuntimeConfig": RuntimeConfig,
        "StoreConfig": StoreConfig,
        "SyncConfig": SyncConfig,
        "TLSFiles": TLSFiles,
    }


# Fields that are not file settings, and why:
_NOT_SETTINGS = {
    # The secret of the module cache's HMAC lives in DATA/cache.key; a node sets it
    # at start, whatever a config says, and a secret has no place in a config file.
    "runtime": frozenset({"cache_key"}),
    # TLS material is given as flat sync.ca_cert/cert/key/crl (TLSFiles's fields),
    # the form the files have always used.
    "sync": frozenset({"tls"}),
}
_TLS_KEYS = ("ca_cert", "cert", "key", "crl")


@functools.cache
def _sections() -> dict[str, dict[str, Setting]]:
    """Section ("" for top level, "runtime.host" for a sub-table) -> key -> setting."""
    layers = _layer_configs()
    sections: dict[str, dict[str, Setting]] = {}

    def add(section: str, cls: type) -> None:
        found = settings_of(cls, exclude=_NOT_SETTINGS.get(section, frozenset()), **layers)
        if section == "sync":
            found += settings_of(layers["TLSFiles"])
        sections[section] = {s.name: s for s in found}
        for s in found:
            if s.kind == "table":
                add(f"{section}.{s.name}" if section else s.name, s.type)

    add("", NodeConfig)
    return sections


def config_keys() -> dict[str, set[str]]:
    """Section -> accepted keys, sub-tables being sections of their own (for the schema test)."""
    return {
        section: {k for k, s in keys.items() if s.kind != "table"}
        for section, keys in _sections().items()
    }


def config_settings() -> dict[str, dict[str, Setting]]:
    """Section -> key -> setting, as derived from the dataclasses (for the schema test)."""
    return {section: dict(keys) for section, keys in _sections().items()}


@functools.cache
def _path_settings() -> frozenset[str]:
    # Settings that are paths (resolved against the config file's directory).
    return frozenset(
        f"{section}.{key}" if section else key
        for section, keys in _sections().items()
        for key, s in keys.items()
        if s.kind == "path"
    )


def _check(section: str, values: Mapping[str, Any]) -> None:
    allowed = _sections()[section]
    for key, value in values.items():
        where = f"{section}.{key}" if section else key
        setting = allowed.get(key)
        if setting is None:
            known = sorted(k for k, s in allowed.items() if s.kind != "table")
            raise ConfigError(f"unknown setting {where!r}; known: {', '.join(known)}")
        if setting.kind == "table":
            if not isinstance(value, dict):
                raise ConfigError(f"[{where}] must be a table")
            _check(where, value)
        else:
            check_value(where, setting, value)


def read_toml(path: Path) -> dict[str, Any]:
    """Parse a config file, naming the file and the problem on failure."""
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError as exc:
        raise ConfigError(f"config file {path} does not exist") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc


@functools.cache
def env_settings() -> dict[str, tuple[str, Setting]]:
    """Environment variable -> (dotted key, setting), one per config key (not tables)."""
    out: dict[str, tuple[str, Setting]] = {}
    for section, keys in _sections().items():
        for key, setting in keys.items():
            if setting.kind != "table":
                dotted = f"{section}.{key}" if section else key
                variable = env_name(dotted)
                if variable in out:  # e.g. a key "a_b" beside a section "a" holding "b"
                    raise TypeError(f"{dotted} and {out[variable][0]} share {variable}")
                out[variable] = (dotted, setting)
    return out


# The first words of the variables env_settings() can produce; another variable
# starting so is most likely a misspelt setting, and the node says so.
_SETTING_PREFIXES = tuple(ENV_PREFIX + p for p in ("API_", "STORE_", "RUNTIME_", "SYNC_", "LOG_"))


def env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """The dotted-key settings given in ``environ`` (``EDGESTATE_*``), checked.

    A bad value is a ConfigError naming the variable; an unknown variable that
    looks like a setting is logged with the closest real name, not refused (the
    environment is shared with other tools, and a node must not fail on theirs).
    """
    known = env_settings()
    out: dict[str, Any] = {}
    for variable, text in environ.items():
        if not variable.startswith(ENV_PREFIX):
            continue
        entry = known.get(variable)
        if entry is None:
            if variable.startswith(_SETTING_PREFIXES):
                close = difflib.get_close_matches(variable, known, n=1)
                log.warning(
                    "environment variable %s is not a setting%s; ignored",
                    variable,
                    f" (did you mean {close[0]}?)" if close else "",
                )
            continue
        dotted, setting = entry
        value = env_value(variable, setting, text)
        try:
            check_value(dotted, setting, value)
            if setting.kind == "enum":
                choice(setting.type, value, dotted)
            _check_log_settings({dotted: value})
        except ConfigError as exc:
            raise ConfigError(f"environment variable {variable}: {exc}") from None
        out[dotted] = value
    return out


def load_config(
    path: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> NodeConfig:
    """Build a NodeConfig: flag ``overrides`` > ``EDGESTATE_*`` variables > file > defaults.

    ``overrides`` maps ``"section.key"`` (or a top-level key) to a value, the form
    the command line produces (``--api-port 8080`` -> ``{"api.port": 8080}``).
    ``environ`` is where the variables are read (default: this process's
    environment; ``{}`` for none). Paths from either are relative to the current
    directory, those in the file to the file's.
    """
    raw: dict[str, Any] = read_toml(path) if path is not None else {}
    layered = {**env_overrides(os.environ if environ is None else environ)}
    layered.update({k: v for k, v in (overrides or {}).items() if v is not None})
    for dotted, value in layered.items():
        if value is None:
            continue
        if dotted in _path_settings() and isinstance(value, str):
            # Paths given on the command line are relative to where it was typed,
            # not to the config file's directory (found in review).
            value = str(Path(value).expanduser().absolute())
        *tables, key = dotted.split(".")
        target = raw
        for table in tables:
            target = target.setdefault(table, {})
        target[key] = value
    _check("", raw)
    return _build(raw, base=path.parent if path is not None else Path.cwd())


def _values(section: str, raw: Mapping[str, Any], base: Path) -> dict[str, Any]:
    """Field values of one checked section; sub-tables become their dataclass."""
    settings = _sections()[section]
    out: dict[str, Any] = {}
    for key, value in raw.items():
        setting = settings[key]
        where = f"{section}.{key}"
        if setting.kind == "table":
            out[key] = setting.type(**_values(where, value, base))
        else:
            out[key] = convert(where, setting, value, base)
    return out


def _build(raw: dict[str, Any], base: Path) -> NodeConfig:
    layers = _layer_configs()
    data_dir = resolve_path(raw.get("data_dir", "edgestate-data"), base)
    api = ApiConfig(**_values("api", raw.get("api", {}), base))
    _positive(api.port, "api.port", allow_zero=True)
    store: StoreConfig = layers["StoreConfig"](**_values("store", raw.get("store", {}), base))

    # The module cache lives in the data directory unless the file says otherwise.
    runtime_values = _values("runtime", raw.get("runtime", {}), data_dir)
    runtime_values.setdefault("cache_dir", data_dir / "module-cache")
    runtime: RuntimeConfig = layers["RuntimeConfig"](**runtime_values)

    sync_values = _values("sync", raw.get("sync", {}), base)
    tls_paths = {k: sync_values.pop(k) for k in _TLS_KEYS if k in sync_values}
    tls: TLSFiles | None = None
    if tls_paths:
        missing = {"ca_cert", "cert", "key"} - set(tls_paths)
        if missing:
            raise ConfigError(f"sync TLS needs ca_cert, cert and key; missing {sorted(missing)}")
        tls = layers["TLSFiles"](**tls_paths)
    # Without TLS material the node can only run insecure; with it, secure unless asked.
    sync_values.setdefault("insecure", tls is None)
    if sync_values["insecure"] and tls is not None:
        raise ConfigError("sync.insecure = true contradicts the configured TLS files")
    if not sync_values["insecure"] and tls is None:
        raise ConfigError("sync.insecure = false needs sync.ca_cert, sync.cert and sync.key")
    sync: SyncConfig = layers["SyncConfig"](tls=tls, **sync_values)

    if api.event_loop not in EVENT_LOOPS:
        raise ConfigError(
            f"api.event_loop must be 'auto', 'asyncio' or 'uvloop', got {api.event_loop!r}"
        )
    if api.tls and tls is None:
        raise ConfigError("api.tls = true needs the cluster TLS files (sync.ca_cert, cert, key)")
    log_format = raw.get("log_format", "text")
    log_level = raw.get("log_level", "info")
    _check_log_settings(raw)
    policy = raw.get("trust_policy")
    module_history = raw.get("module_history", 5)
    if not 1 <= module_history <= _MAX_MODULE_HISTORY:
        raise ConfigError(
            f"module_history must be 1..{_MAX_MODULE_HISTORY} (each kept version is a whole "
            f"bundle stored on every node), got {module_history}"
        )
    return NodeConfig(
        data_dir=data_dir,
        api=api,
        store=store,
        runtime=runtime,
        sync=sync,
        trust_policy=resolve_path(policy, base) if policy else None,
        log_format=log_format,
        log_level=log_level,
        module_history=module_history,
    )


# The accepted values, as the error names them.
_LOG_CHOICES = {
    "log_format": (("text", "json"), "'text' or 'json'"),
    "log_level": (("debug", "info", "warning", "error"), "debug, info, warning or error"),
}


def _check_log_settings(raw: Mapping[str, Any]) -> None:
    for key, (accepted, names) in _LOG_CHOICES.items():
        if key in raw and raw[key] not in accepted:
            raise ConfigError(f"{key} must be {names}, got {raw[key]!r}")


# Mirrors edgestate.node.history.MAX_KEEP (not imported: this module stays light).
_MAX_MODULE_HISTORY = 20


def _positive(value: int, where: str, *, allow_zero: bool = False) -> None:
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(f"{where} must be positive, got {value}")


__all__ = [
    "DEFAULT_API_PORT",
    "STORE_SUBDIR",
    "ApiConfig",
    "NodeConfig",
    "config_keys",
    "config_settings",
    "env_overrides",
    "env_settings",
    "load_config",
    "read_toml",
    "store_dir_of",
]
