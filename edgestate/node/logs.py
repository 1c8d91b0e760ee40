"""The node's logging: text or JSON lines, structured fields, request ids, access log.

    setup_logging("json", "info", process="node")    # the node; "worker-0" in a worker

A JSON line is one object: ``time`` (ISO-8601 UTC, milliseconds), ``level``,
``logger``, ``message``, ``process``, the ``request_id`` of the HTTP request the
line was logged under (if any), the record's structured fields, and
``exception`` for a traceback. Structured fields are passed as
``extra={"fields": {...}}`` (``module``, ``doc``, ``peer``, ``version`` ...): one
key, because several natural names (``module`` among them) are LogRecord
attributes that ``extra`` may not overwrite. Text lines carry the same fields as
``key=value`` after the message.

A request id is taken from the client's ``X-Request-Id`` when it is sane
(:data:`REQUEST_ID_RE`), else made here; the API middleware sets
:data:`request_id` for the request's task, and the runtime runs guests in a copy
of that context, so a guest's log lines carry the id of the invocation that wrote
them. Docs: docs/observability.md.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from edgestate.errors import ConfigError

# The id of the HTTP request being served, in the task (and guest thread) serving it.
request_id: ContextVar[str | None] = ContextVar("edgestate_request_id", default=None)

# What a client's X-Request-Id may be to be adopted: UUIDs, ULIDs, W3C trace ids and
# the usual proxy ids fit; anything longer or stranger is a log-injection vector
# (newlines, quotes) or a way to bloat every line, and is replaced by our own.
MAX_REQUEST_ID_CHARS = 128
REQUEST_ID_RE = re.compile(rf"[A-Za-z0-9._:-]{{1,{MAX_REQUEST_ID_CHARS}}}")
REQUEST_ID_HEADER = "X-Request-Id"

LOG_FORMATS = ("text", "json")
ACCESS_LOGGER = "edgestate.access"


def new_request_id(header: str | None) -> str:
    """``header`` if it is a sane request id, else a fresh random one (16 hex)."""
    if header is not None and REQUEST_ID_RE.fullmatch(header):
        return header
    return os.urandom(8).hex()


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields = getattr(record, "fields", None)
    return fields if isinstance(fields, dict) else {}


class JsonFormatter(logging.Formatter):
    """One JSON object per line; see the module docstring for its keys."""

    def __init__(self, process: str) -> None:
        super().__init__()
        self.process = process

    def format(self, record: logging.LogRecord) -> str:
        when = datetime.fromtimestamp(record.created, UTC)
        out: dict[str, Any] = {
            "time": when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "process": self.process,
        }
        rid = getattr(record, "request_id", None)
        if rid is not None:
            out["request_id"] = rid
        for key, value in _fields(record).items():
            out.setdefault(key, value)  # the fixed keys above win over a field's
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        # default=str: a field that is a Path or an enum is still one line, never a crash
        return json.dumps(out, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """``time level [process] logger: message key=value ...``."""

    def __init__(self, process: str) -> None:
        tag = "" if process == "node" else f"{process} "
        super().__init__(f"%(asctime)s %(levelname)-7s {tag}%(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extra = dict(_fields(record))
        rid = getattr(record, "request_id", None)
        if rid is not None:
            extra["request_id"] = rid
        if not extra:
            return line
        pairs = " ".join(f"{k}={_text_value(v)}" for k, v in extra.items())
        head, sep, trace = line.partition("\n")  # fields before a traceback, on line one
        return f"{head} {pairs}{sep}{trace}"


def _text_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return json.dumps(text) if not text or any(c in text for c in ' "=\n') else text


class RequestIdFilter(logging.Filter):
    """Stamps each record with the request id of the context it was logged in."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = request_id.get()
        return True


def setup_logging(fmt: str, level: str, *, process: str = "node") -> None:
    """Send every log line to stderr as ``fmt`` (``text`` or ``json``) from ``level`` up.

    ``process`` names the process in each line: ``node`` or ``worker-N``.
    """
    if fmt not in LOG_FORMATS:
        raise ConfigError(f"log_format must be 'text' or 'json', got {fmt!r}")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(process) if fmt == "json" else TextFormatter(process))
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


__all__ = [
    "ACCESS_LOGGER",
    "LOG_FORMATS",
    "MAX_REQUEST_ID_CHARS",
    "REQUEST_ID_HEADER",
    "REQUEST_ID_RE",
    "JsonFormatter",
    "RequestIdFilter",
    "TextFormatter",
    "new_request_id",
    "request_id",
    "setup_logging",
]
