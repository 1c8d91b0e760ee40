"""``edgestate dev``: the edit-build-run loop of one module project.

A local node (or the one ``--node`` names) runs the module; every save of a
source rebuilds it, signs it with a dev key kept in ``.edgestate-dev/`` and
redeploys it as ``VERSION-dev.N``. Requests go to a small HTTP front on
127.0.0.1 (``POST /`` with the input as the body), which forwards them to the
node and prints what each one cost: status, fuel, instantiate and execute time,
writes. Log lines the module writes are tailed from the local node's log.

The seed's rule, printed when it breaks: a module that takes longer to
instantiate than to execute is paying for its size on every request.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from edgestate.authoring.build import build_project
from edgestate.authoring.project import LANGUAGES, Project
from edgestate.client import NodeClient
from edgestate.devkit import Publisher, make_publisher, spawn_node
from edgestate.errors import EdgestateError, NodeAPIError

DEV_DIR = ".edgestate-dev"
# Polling, not inotify: works the same on every OS and in containers, and a
# project is a handful of files.
POLL_S = 0.25
# The longest a request may take through the front (the node enforces the
# module's own wall-time limit well below this).
_FORWARD_TIMEOUT_S = 30
_WATCHED = (*LANGUAGES.values(), "h", "json")
Echo = Callable[[str], None]


@dataclass
class _Deployed:
    name: str = ""
    version: str = ""
    count: int = 0


def _rule(instantiate_us: float, execute_us: float) -> str | None:
    if instantiate_us <= execute_us:
        return None
    return (
        f"  rule: instantiate ({instantiate_us:.1f} us) took longer than execute "
        f"({execute_us:.1f} us): every request pays for the module's size; keep it lean "
        "(fewer memory pages and data segments, no debug sections, less code)"
    )


def cost_line(status: int, headers: dict[str, str], output: bytes) -> list[str]:
    """What one forwarded invocation printed: its costs, then the rule if broken."""
    h = {k.lower(): v for k, v in headers.items()}
    inst = float(h.get("x-edgestate-instantiate-us", "0"))
    execu = float(h.get("x-edgestate-execute-us", "0"))
    text = output[:60].decode("utf-8", "replace")
    lines = [
        f"{status}  fuel {h.get('x-edgestate-fuel', '?')}  instantiate {inst:.1f} us  "
        f"execute {execu:.1f} us  writes {h.get('x-edgestate-writes', '?')}  -> {text!r}"
    ]
    rule = _rule(inst, execu)
    if rule:
        lines.append(rule)
    return lines


@dataclass
class DevSession:
    """One ``edgestate dev`` run; :meth:`run` blocks until :meth:`stop`."""

    project: Project
    echo: Echo
    node_url: str | None = None
    token: str | None = None
    port: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _deployed: _Deployed = field(default_factory=_Deployed)
    _node: subprocess.Popen[bytes] | None = None
    _log: Path | None = None

    @property
    def dev_dir(self) -> Path:
        """Dev key, local node data and build cache."""
        return self.project.directory / DEV_DIR

    def _publisher(self) -> Publisher:
        key_dir = self.dev_dir / "key"
        if (key_dir / "dev.key").exists():
            policy = json.loads((key_dir / "dev-trust-policy.json").read_text())
            public = policy["publishers"][0]["public_key"]
            return Publisher(key_dir / "dev.key", key_dir / "dev-trust-policy.json", public)
        return make_publisher(key_dir, name="dev", fuel=100_000_000, memory_pages=256)

    def _start_node(self, publisher: Publisher) -> NodeClient:
        if self.node_url is not None:
            self.echo(f"node         {self.node_url} (it must trust the dev key below)")
            self.echo(f'dev key      "public_key": "{publisher.public_key}"')
            self.echo("log lines    not available from a remote node (run without --node)")
            return NodeClient(self.node_url, self.token)
        data = self.dev_dir / "node"
        data.mkdir(parents=True, exist_ok=True)
        shutil.copy(publisher.policy_path, data / "trust-policy.json")
        self._log = data / "node.log"
        self._log.write_bytes(b"")
        # In-process invocations (api.workers = 0): a dev node starts fastest so.
        args = ["--data", str(data), "--api-port", "0", "--sync-port", "0", "--no-mdns"]
        args += ["--workers", "0"]
        self._node, info = spawn_node(
            [*args, "--log-level", "info"], data / "ready.json", self._log
        )
        self.echo(f"node         local, {info['api']} (data {data})")
        return NodeClient(info["api"], (data / "admin.token").read_text().strip())

    def _sources(self) -> dict[Path, int]:
        found: dict[Path, int] = {}
        for path in self.project.directory.iterdir():
            if path.is_file() and path.suffix.lstrip(".") in _WATCHED:
                found[path] = path.stat().st_mtime_ns
        return found

    def _deploy(self, client: NodeClient, publisher: Publisher) -> None:
        try:
            report = build_project(self.project, self.dev_dir / "build")
        except EdgestateError as exc:
            self.echo(f"build failed: {exc.code}: {exc}")
            return
        for warning in report.warnings:
            self.echo(f"warning: {warning}")
        if report.problems:
            for problem in report.problems:
                self.echo(f"problem: {problem}")
            return
        wasm = self.project.wasm.read_bytes()
        manifest = json.loads(self.project.manifest.read_text())
        self._deployed.count += 1
        version = f"{manifest['version'].split('-')[0].split('+')[0]}-dev.{self._deployed.count}"
        manifest["version"] = version
        manifest_bytes = json.dumps(manifest).encode()
        try:
            # Every build replaces the last, even one from an earlier session (whose
            # -dev.N counted higher) on the dev node's kept data: no downgrade rule here.
            signature = publisher.sign(wasm, manifest_bytes)
            client.deploy(wasm, manifest_bytes, signature, allow_downgrade=True)
        except EdgestateError as exc:
            self.echo(f"deploy failed: {exc.code}: {exc}")
            return
        self._deployed.name, self._deployed.version = manifest["name"], version
        self.echo(
            f"deployed     {manifest['name']} {version} ({report.size} bytes, "
            f"{report.initial_pages} pages)"
        )

    def _serve(self, client: NodeClient) -> ThreadingHTTPServer:
        session = self

        class Front(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                status, output = 200, b""
                headers: dict[str, str] = {}
                try:
                    output, headers = client.invoke(session._deployed.name, body)
                except NodeAPIError as exc:
                    status, output = exc.status, f"{exc.code}: {exc}".encode()
                except EdgestateError as exc:
                    status, output = 502, f"{exc.code}: {exc}".encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(output)))
                for k, v in headers.items():
                    if k.lower().startswith("x-edgestate-"):
                        self.send_header(k, v)
                self.end_headers()
                self.wfile.write(output)
                if status == 200:
                    for line in cost_line(status, headers, output):
                        session.echo(line)
                else:
                    session.echo(f"{status}  {output.decode('utf-8', 'replace')}")

            def log_message(self, format: str, *args: Any) -> None:
                pass  # the cost line is the request log

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Front)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server

    def _tail(self, offset: int) -> int:
        if self._log is None or not self._log.exists():
            return offset
        with self._log.open("rb") as f:
            f.seek(offset)
            chunk = f.read()
        end = chunk.rfind(b"\n") + 1  # only whole lines
        for raw in chunk[:end].decode("utf-8", "replace").splitlines():
            if "edgestate.guest" in raw:
                self.echo(f"log          {raw.split('edgestate.guest: ', 1)[-1]}")
        return offset + end

    def run(self) -> None:
        """Start, deploy, then watch until :meth:`stop` (or SIGINT / SIGTERM)."""
        publisher = self._publisher()
        client = self._start_node(publisher)
        server: ThreadingHTTPServer | None = None
        try:
            seen = self._sources()
            self._deploy(client, publisher)
            server = self._serve(client)
            self.echo(f"serving      http://127.0.0.1:{server.server_address[1]}/ (POST the input)")
            offset = 0
            while not self._stop.wait(POLL_S):
                offset = self._tail(offset)
                now = self._sources()
                if now != seen:
                    changed = sorted(
                        p.name
                        for p in set(now) ^ set(seen) | {p for p in now if seen.get(p) != now[p]}
                    )
                    self.echo(f"changed      {', '.join(changed)}: rebuilding")
                    seen = now
                    self._deploy(client, publisher)
            self._tail(offset)
        finally:
            if server is not None:
                server.shutdown()
                server.server_close()
            if self._node is not None:
                self._node.send_signal(signal.SIGTERM)
                try:
                    self._node.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    self._node.kill()
                    self._node.wait()

    def stop(self) -> None:
        """End :meth:`run` (from a signal handler or another thread)."""
        self._stop.set()


def run_dev(
    project: Project,
    echo: Echo,
    *,
    node_url: str | None = None,
    token: str | None = None,
    port: int = 0,
) -> None:
    """Run a :class:`DevSession` until SIGINT or SIGTERM."""
    session = DevSession(project, echo, node_url, token, port)
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    for s in previous:
        signal.signal(s, lambda *_: session.stop())
    try:
        session.run()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
