"""Real `edgestate node` subprocesses on 127.0.0.1, and a client for their API."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import pytest

from edgestate.client import NodeClient
from edgestate.devkit import spawn_node

START_TIMEOUT_S = 30


T = TypeVar("T")


@dataclass
class NodeProcess:
    """One node subprocess; ``stop()`` sends SIGTERM and waits."""

    proc: subprocess.Popen[bytes]
    data: Path
    api: str
    sync_port: int
    node_id: str
    log_path: Path
    client: NodeClient = field(init=False)

    def __post_init__(self) -> None:
        self.client = NodeClient(self.api, (self.data / "admin.token").read_text().strip())

    @property
    def token(self) -> str:
        return (self.data / "admin.token").read_text().strip()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        return self.proc.returncode

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


# Node tests run with one invocation worker: every admin, /yjs, watch and health
# request then crosses the worker's relay, and a node starts in ~0.4 s more than
# in-process (api.workers = 0, which tests/cli and tests/guest run).
DEFAULT_WORKERS = "1"


def start_node(
    data: Path, *extra: str, config: Path | None = None, env: dict[str, str] | None = None
) -> NodeProcess:
    """Start `edgestate node` with ephemeral ports on 127.0.0.1; wait until it is ready."""
    data.mkdir(parents=True, exist_ok=True)
    log_path = data / "node.log"
    args = ["--data", str(data), "--api-port", "0", "--sync-port", "0", *extra]
    if "--workers" not in extra and not (config and "workers" in config.read_text()):
        args += ["--workers", DEFAULT_WORKERS]
    if config is not None:
        args += ["--config", str(config)]
    proc, info = spawn_node(
        args,
        data / "ready.json",
        log_path,
        timeout=START_TIMEOUT_S,
        env={**os.environ, **(env or {})},
    )
    return NodeProcess(proc, data, info["api"], info["sync_port"], info["node_id"], log_path)


@pytest.fixture
def node_factory(tmp_path: Path) -> Iterator[list[NodeProcess]]:
    """Start nodes with ``start_node``; every one still running is stopped at the end."""
    started: list[NodeProcess] = []
    yield started
    for n in started:
        n.stop()


def eventually(check: Callable[[], T | None], timeout: float = 20.0, what: str = "condition") -> T:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout:.0f} s (last: {result!r})")
        time.sleep(0.02)


@contextmanager
def background_load(
    target: Callable[..., None], arg_lists: list[tuple[object, ...]]
) -> Iterator[threading.Event]:
    """Run ``target(*args, stop)`` in one daemon thread per argument tuple.

    The threads are stopped and joined however the block ends: a failed assert
    inside it must not leave client threads looping on a stopped node, which kept
    the interpreter (and CI with it) from ever exiting.
    """
    stop = threading.Event()
    threads = [
        threading.Thread(target=target, args=(*args, stop), daemon=True) for args in arg_lists
    ]
    for t in threads:
        t.start()
    try:
        yield stop
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
