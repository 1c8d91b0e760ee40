"""``nats-server`` processes for tests and benchmarks: JetStream on, loopback only.

    with nats_cluster(tmp_path, size=3, user="edge", password="pw") as servers:
        servers[0].url     # nats://127.0.0.1:PORT
        servers[1].kill()  # SIGKILL mid-traffic; .start() brings it back, same store

Each server keeps its JetStream store in its own temp directory, binds
127.0.0.1 only, and is stopped when the context exits (whatever happened).
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from edgestate.errors import NodeStartError

# How long a server may take to accept connections after its start.
READY_S = 10.0


def free_port() -> int:
    """An unused TCP port on 127.0.0.1 (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class NatsServer:
    """One ``nats-server`` process, restartable on the same ports and store."""

    def __init__(
        self,
        directory: Path,
        *,
        name: str = "n0",
        cluster_name: str = "edgestate-test",
        routes: list[int] | None = None,
        user: str | None = None,
        password: str | None = None,
        advertise: bool = True,
        conf: str = "",
    ) -> None:
        if shutil.which("nats-server") is None:
            raise NodeStartError(
                "nats-server is not installed (Debian: apt-get install nats-server)"
            )
        self.name = name
        self.dir = directory
        self.port = free_port()
        self.cluster_port = free_port() if routes is not None else None
        self._routes = routes
        self._cluster_name = cluster_name
        self._user, self._password = user, password
        self._advertise = advertise
        # Extra nats-server configuration (tls {}, authorization {}, operator...):
        # written to a file the server reads; the command line's flags win over it.
        self.conf = conf
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The client URL."""
        return f"nats://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        """The command line this server runs with."""
        cmd = ["nats-server", "-js", "-sd", str(self.dir / "js"), "-a", "127.0.0.1"]
        if self.conf:
            cmd += ["-c", str(self.dir / "server.conf")]
        cmd += ["-p", str(self.port), "--server_name", self.name, "-l", str(self.dir / "log")]
        if self._user is not None and self._password is not None:
            cmd += ["--user", self._user, "--pass", self._password]
        if self.cluster_port is not None:
            cmd += ["--cluster_name", self._cluster_name]
            cmd += ["--cluster", f"nats://127.0.0.1:{self.cluster_port}"]
            routes = ",".join(f"nats://127.0.0.1:{p}" for p in self._routes or [])
            if routes:
                cmd += ["--routes", routes]
            if not self._advertise:
                # Clients then know only the servers they were given: a site
                # whose server is down is cut off, not moved to another server.
                cmd += ["--no_advertise"]
        return cmd

    def start(self) -> None:
        """Start (or restart) the process and wait until it accepts connections."""
        self.dir.mkdir(parents=True, exist_ok=True)
        if self.conf:
            (self.dir / "server.conf").write_text(self.conf)
        self.proc = subprocess.Popen(
            self.command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + READY_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise NodeStartError(f"nats-server {self.name} exited: {self.log_tail()}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), 0.2),
            ):
                return
            time.sleep(0.05)
        self.stop()
        raise NodeStartError(f"nats-server {self.name} did not listen within {READY_S} s")

    def log_tail(self, lines: int = 20) -> str:
        """The end of the server's log (for failures)."""
        path = self.dir / "log"
        return (
            "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
            if path.exists()
            else ""
        )

    def kill(self) -> None:
        """SIGKILL: a server lost mid-traffic."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        """Terminate and wait (killed if it lingers)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.kill()


@contextlib.contextmanager
def nats_cluster(
    directory: Path,
    *,
    size: int = 1,
    user: str | None = None,
    password: str | None = None,
    advertise: bool = True,
    conf: str = "",
) -> Iterator[list[NatsServer]]:
    """``size`` servers (a routed cluster if more than one); all stopped on exit."""
    servers: list[NatsServer] = []
    try:
        for i in range(size):
            server = NatsServer(
                directory / f"n{i}",
                name=f"n{i}",
                routes=[] if size > 1 else None,
                user=user,
                password=password,
                advertise=advertise,
                conf=conf,
            )
            servers.append(server)
        if size > 1:
            ports = [s.cluster_port for s in servers]
            for server in servers:
                server._routes = [p for p in ports if p is not None and p != server.cluster_port]
        for server in servers:
            server.start()
        yield servers
    finally:
        for server in servers:
            server.stop()
