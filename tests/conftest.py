"""Fixtures shared by every test package: real stores in temporary directories."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgestate.store import Store, StoreConfig


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    """A fresh, not yet created, data directory."""
    return tmp_path / "data"


@pytest.fixture
def store(store_dir: Path) -> Iterator[Store]:
    """An open store with documents ``docs`` and ``counters``."""
    s = Store.open(store_dir, StoreConfig())
    s.create_document("docs")
    s.create_document("counters")
    yield s
    s.close()


JS_DIR = Path(__file__).resolve().parent / "js"


@pytest.fixture(scope="session")
def js_client() -> Path:
    """tests/js with node_modules installed (CI starts from a clean clone)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are needed to run the real Yjs client")
    if not (JS_DIR / "node_modules" / "y-websocket").exists():
        command = "ci" if (JS_DIR / "package-lock.json").exists() else "install"
        subprocess.run(
            ["npm", command, "--no-audit", "--no-fund"],
            cwd=JS_DIR,
            check=True,
            timeout=300,
            capture_output=True,
        )
    return JS_DIR / "client.mjs"


def _child_pids() -> list[int]:
    """Every live child of this process, whichever thread started it."""
    pids: list[int] = []
    for task in Path("/proc/self/task").iterdir():
        try:
            pids += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            continue
    return pids


def _describe(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:160]
    except OSError:
        return "?"


_abandoned_threads: list[threading.Thread] = []


@pytest.hookimpl(trylast=True)  # after session fixtures are torn down
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run, loudly, if a test left a process or a client thread behind.

    Either one used to keep CI from ever finishing: a leftover child holds the
    output pipe open, and a non-daemon thread looping on a stopped node keeps the
    interpreter from exiting after the summary.
    """
    pids = _child_pids()
    leftovers = [f"process {pid}: {_describe(pid)}" for pid in pids]
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    _abandoned_threads[:] = [
        t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon
    ]
    leftovers += [f"thread {t.name}" for t in _abandoned_threads]
    if leftovers:
        sys.stderr.write("\ntests left these running (processes now killed):\n")
        sys.stderr.write("".join(f"  {line}\n" for line in leftovers))
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_unconfigure(config: pytest.Config) -> None:
    """Exit without waiting for abandoned threads (they would block exit forever)."""
    if _abandoned_threads:
        sys.stderr.flush()
        sys.stdout.flush()
        os._exit(int(pytest.ExitCode.TESTS_FAILED))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """In CI a skip is a failure: scripts/bootstrap installs every tool the suite
    needs (toolchains, chromium, nats-server, promtool), so a skip there means a
    check silently did not run."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if os.environ.get("CI") == "true" and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped in CI ({reason}): scripts/bootstrap should have installed it"
