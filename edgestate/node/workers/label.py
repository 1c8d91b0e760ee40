"""Which worker a log line is from: its index, which a spare learns only with ``go``."""

from __future__ import annotations

import logging

_label = ["?"]


def set_worker_label(label: str) -> None:
    """Name the worker in its log lines from now on."""
    _label[0] = label


class WorkerLabel(logging.Filter):
    """Puts the label in each record as ``worker`` (``%(worker)s`` in the format)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.worker = _label[0]
        return True
