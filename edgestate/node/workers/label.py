"""Which worker a log line is from: its index, which a spare learns only with ``go``."""

from __future__ import annotations

_label = ["?"]


def set_worker_label(label: str) -> None:
    """Name the worker in its log lines from now on."""
    _label[0] = label


def worker_label() -> str:
    """This process's name in its log lines (edgestate.node.logs): ``worker-N``."""
    return f"worker-{_label[0]}"
