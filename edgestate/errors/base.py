"""The root of the tree: the one class every edgestate error derives from.

Part of the tree in ``edgestate.errors`` (its docstring); import from there."""

from __future__ import annotations

from typing import Any


class EdgestateError(Exception):
    """Base of every error edgestate raises on purpose."""

    code = "edgestate_error"

    def __reduce__(self) -> tuple[Any, ...]:
        # Exception pickles as cls(*args), which breaks every subclass whose
        # __init__ takes other arguments than its message (NodeAPIError(status,
        # code, message) has args == (text,)): rebuild from args and attributes
        # instead, so an error survives a process boundary (pool, multiprocessing).
        return (_rebuild, (type(self), self.args, self.__dict__))


def _rebuild(cls: type[EdgestateError], args: tuple[Any, ...], state: dict[str, Any]) -> Any:
    error = cls.__new__(cls)
    Exception.__init__(error, *args)
    error.__dict__.update(state)
    return error
