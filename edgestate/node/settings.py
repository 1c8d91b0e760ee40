"""Config-file settings derived from the config dataclasses themselves.

A section of the TOML file is a config dataclass; its keys are the dataclass's
fields and their types come from the field annotations
(``dataclasses.fields`` + ``typing.get_type_hints``), so a field added to a
layer's config is settable from the file the day it is added, and cannot drift
from a hand-kept copy. How a TOML value maps onto a field type:

==============================  =============  ===================================
field type                      TOML value     becomes
==============================  =============  ===================================
``str`` (or ``str | None``)     string         as is
``int``                         integer        as is (a boolean is refused)
``float``                       number         as is
``bool``                        boolean        as is
``Path`` (or ``Path | None``)   string         resolved against a base directory
an ``enum.Enum``                string         the member of that value
``tuple[str, ...]``             array          tuple of strings
``frozenset[str]``              array          frozenset of strings
another config dataclass        table          that dataclass (a sub-section)
==============================  =============  ===================================

The same settings are read from ``EDGESTATE_*`` environment variables
(:func:`env_name`, :func:`env_value`): the dotted key upper-cased, dots as
underscores, values parsed from text (numbers, booleans, comma-separated lists).

This module is stdlib-only and never imports a layer: the caller hands it the
dataclasses (so ``edgestate.node.config`` stays light to import).
"""

from __future__ import annotations

import dataclasses
import enum
import math
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from edgestate.errors import ConfigError

# What each kind of setting accepts from TOML, as Python types.
_ACCEPTS: dict[str, type | tuple[type, ...]] = {
    "str": str,
    "int": int,
    "float": (int, float),
    "bool": bool,
    "path": str,
    "enum": str,
    "strings": list,
    "table": dict,
}


@dataclass(frozen=True, slots=True)
class Setting:
    """One settable key of a section, derived from one dataclass field."""

    name: str  # the key in its section
    kind: str  # a key of _ACCEPTS
    type: Any  # the field's type, ``None`` unwrapped (an enum class, a dataclass, ...)

    @property
    def accepts(self) -> type | tuple[type, ...]:
        """The Python types of a TOML value this setting takes."""
        return _ACCEPTS[self.kind]


def settings_of(
    cls: type, *, exclude: frozenset[str] = frozenset(), **localns: Any
) -> list[Setting]:
    """The settings of config dataclass ``cls``: one per field not in ``exclude``.

    ``localns`` resolves annotation names the dataclass's module only imports
    under ``TYPE_CHECKING``.
    """
    hints = typing.get_type_hints(cls, localns=localns)
    out = []
    for f in dataclasses.fields(cls):
        if f.name not in exclude:
            kind, tp = _kind(hints[f.name], f"{cls.__name__}.{f.name}")
            out.append(Setting(f.name, kind, tp))
    return out


def _kind(tp: Any, where: str) -> tuple[str, Any]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return _kind(args[0], where)
    elif origin in (tuple, frozenset) and typing.get_args(tp) in ((str, ...), (str,)):
        return "strings", origin
    elif isinstance(tp, type):
        if issubclass(tp, enum.Enum):
            return "enum", tp
        if issubclass(tp, Path):
            return "path", tp
        if dataclasses.is_dataclass(tp):
            return "table", tp
        for simple in (bool, int, float, str):  # bool first: it is an int
            if issubclass(tp, simple):
                return simple.__name__, tp
    # A config field of a type with no TOML form must be excluded explicitly.
    raise TypeError(f"config field {where} has type {tp!r}, which has no TOML form")


def check_value(where: str, setting: Setting, value: Any) -> None:
    """Refuse a TOML value of the wrong type, naming the dotted key."""
    want = setting.accepts
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


def convert(where: str, setting: Setting, value: Any, base: Path) -> Any:
    """The field value of an already type-checked TOML value (tables excluded)."""
    if setting.kind == "path":
        return resolve_path(value, base)
    if setting.kind == "enum":
        return choice(setting.type, value, where)
    if setting.kind == "strings":
        return setting.type(str(item) for item in value)
    return value


def resolve_path(value: str, base: Path) -> Path:
    """``value`` as a path, relative ones taken from ``base``."""
    p = Path(value).expanduser()
    return p if p.is_absolute() else base / p


E = TypeVar("E", bound=enum.Enum)


def choice(kind: type[E], value: object, name: str) -> E:
    """``kind(value)``, or a ConfigError listing the accepted values."""
    try:
        return kind(value)
    except ValueError:
        accepted = [m.value for m in kind]
        names = ", ".join(repr(v) for v in accepted[:-1]) + f" or {accepted[-1]!r}"
        raise ConfigError(f"{name} must be {names}, got {value!r}") from None


# --- the environment layer -------------------------------------------------------------

ENV_PREFIX = "EDGESTATE_"
# Words that read as a boolean in an environment variable (compared lower-cased).
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def env_name(dotted: str) -> str:
    """The variable of a dotted config key: ``api.workers`` -> ``EDGESTATE_API_WORKERS``."""
    return ENV_PREFIX + dotted.replace(".", "_").upper()


def env_value(variable: str, setting: Setting, text: str) -> Any:
    """The TOML-shaped value of one environment variable, or a ConfigError naming it.

    Numbers are parsed as TOML would (an integer for ``int``), booleans accept
    1/0, true/false, yes/no, on/off, and a list is comma-separated (``a:1,b:2``;
    empty means an empty list). The result then goes through the same checks as
    a value from the file.
    """
    stripped = text.strip()
    kind = setting.kind
    try:
        if kind == "int":
            return int(stripped, 10)
        if kind == "float":
            number = float(stripped)
            if not math.isfinite(number):
                raise ValueError("not finite")
            return number
        if kind == "bool":
            if stripped.lower() in _TRUE:
                return True
            if stripped.lower() in _FALSE:
                return False
            raise ValueError("not a boolean (use true/false, 1/0, yes/no or on/off)")
        if kind == "strings":
            return [item.strip() for item in stripped.split(",") if item.strip()]
    except ValueError as exc:
        want = {"int": "an integer", "float": "a finite number"}.get(kind, "a boolean")
        detail = str(exc) if kind == "bool" else f"not {want}"
        raise ConfigError(f"environment variable {variable}={text!r}: {detail}") from None
    return text
