"""``edgestate demo``: a local 3-node cluster, end to end, that cleans up after itself.

It makes a throwaway cluster CA and publisher, starts the nodes as separate
processes on 127.0.0.1 that find each other by mDNS (inside a network namespace
of its own, so multicast never leaves it; static peers if namespaces are not
available), deploys signed example modules to one node, runs a burst of
invocations there, shows the writes arriving on the others with timings, and
stops everything.
"""

from __future__ import annotations

import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.client import HTTPException
from pathlib import Path
from typing import Any

import click
import tomli_w

from edgestate.client import NodeClient
from edgestate.devkit import example_bundle, make_publisher, spawn_node
from edgestate.errors import EdgestateError, NodeStartError
from edgestate.sync import tls

NETNS_FLAG = "EDGESTATE_DEMO_IN_NETNS"


@dataclass
class DemoNode:
    """One node process of the demo."""

    name: str
    proc: subprocess.Popen[bytes]
    api: str
    sync_port: int
    client: NodeClient
    arrivals: dict[str, float] = field(default_factory=dict)  # key of "kv" -> first seen at
    watch_error: str | None = None  # why its last watch stream ended, if it failed


def _say(text: str) -> None:
    click.echo(text)


def _step(label: str) -> Callable[[], None]:
    click.echo(f"  {label} ...", nl=False)
    t0 = time.perf_counter()

    def done() -> None:
        click.echo(f" done ({(time.perf_counter() - t0) * 1000:.0f} ms)")

    return done


def netns_available() -> bool:
    """True if this process may create a network namespace with loopback multicast."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return False
    probe = subprocess.run(
        ["unshare", "-n", "sh", "-c", "ip link set lo up && ip link set lo multicast on"],
        capture_output=True,
        timeout=10,
        check=False,
    )
    return probe.returncode == 0


def run(nodes: int, invocations: int, concurrency: int, use_mdns: bool, keep: bool = False) -> None:
    """Entry point: re-enter inside a private network namespace for mDNS if possible.

    With ``keep`` the cluster stays running in a directory of its own (see
    :mod:`edgestate.devkit.demo_keep`); its nodes use static peers on 127.0.0.1,
    since a private namespace would be unreachable from the shell afterwards.
    """
    if keep:
        if use_mdns:
            _say("note: --keep uses static peers on 127.0.0.1, reachable from this shell")
        work = Path(tempfile.mkdtemp(prefix="edgestate-demo-"))
        _Demo(work, nodes, invocations, concurrency, False, keep=True).run()
        return
    if use_mdns and os.environ.get(NETNS_FLAG) != "1":
        if netns_available():
            script = (
                "ip link set lo up && ip link set lo multicast on && "
                f'exec "$0" -m edgestate.cli.main demo --nodes {nodes} '
                f"--invocations {invocations} --concurrency {concurrency}"
            )
            env = {**os.environ, NETNS_FLAG: "1"}
            done = subprocess.run(
                ["unshare", "-n", "sh", "-c", script, sys.executable], env=env, check=False
            )
            raise SystemExit(done.returncode)
        _say(
            "note: cannot create a network namespace here (needs root and unshare); "
            "using static peers on 127.0.0.1 instead of mDNS"
        )
        use_mdns = False
    with tempfile.TemporaryDirectory(prefix="edgestate-demo-") as tmp:
        _Demo(Path(tmp), nodes, invocations, concurrency, use_mdns).run()


class _Demo:
    def __init__(
        self,
        work: Path,
        n: int,
        invocations: int,
        concurrency: int,
        mdns: bool,
        *,
        keep: bool = False,
    ):
        self.work, self.n, self.invocations = work, n, invocations
        self.concurrency, self.mdns, self.keep = concurrency, mdns, keep
        self.nodes: list[DemoNode] = []
        self._watchers: list[threading.Thread] = []

    def run(self) -> None:
        where = (
            "in a private network namespace, peers found by mDNS on loopback"
            if self.mdns
            else "on 127.0.0.1 with static peers"
        )
        _say(f"edgestate demo: {self.n} nodes {where}")
        kept = False
        try:
            self._setup()
            self._start_nodes()
            self._deploy()
            self._burst_and_observe()
            if self.keep:
                self._keep()
                kept = True
        finally:
            if not kept:
                self._stop_all()
                if self.keep:  # failed before it could be kept: leave nothing behind
                    shutil.rmtree(self.work, ignore_errors=True)

    def _keep(self) -> None:
        from edgestate.devkit.demo_keep import print_kept, record_cluster

        nodes = [
            {
                "name": n.name,
                "api": n.api,
                "sync_port": n.sync_port,
                "pid": n.proc.pid,
                "data": str(self.work / n.name / "data"),
            }
            for n in self.nodes
        ]
        record_cluster(self.work, nodes)
        print_kept(self.work, nodes)

    def _setup(self) -> None:
        done = _step("cluster CA and node certificates")
        self.ca = self.work / "ca"
        cluster_id = tls.init_cluster(self.ca, name="edgestate demo")
        for i in range(self.n):
            tls.issue_node(self.ca, f"node{i}", self.work / f"node{i}" / "tls")
        done()
        _say(f"    cluster id {cluster_id[:16]}…")
        done = _step("publisher key, trust policy, example modules (zig -> wasm, signed)")
        self.publisher = make_publisher(self.work / "publisher")
        build = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "edgestate"
        self.bundles = [
            example_bundle(name, self.publisher, build / "guest-wasm")
            for name in ("counter", "session_store", "kv_echo")
        ]
        done()

    def _config(self, i: int, peers: list[str]) -> Path:
        node_dir = self.work / f"node{i}"
        files = tls.files_for(node_dir / "tls", f"node{i}")
        config = {
            "data_dir": str(node_dir / "data"),
            "trust_policy": str(self.publisher.policy_path),
            "log_level": os.environ.get("EDGESTATE_DEMO_LOG_LEVEL", "warning"),
            "api": {"host": "127.0.0.1", "port": 0},
            "sync": {
                "host": "127.0.0.1",
                "port": 0,
                "mdns": self.mdns,
                "static_peers": peers,
                "anti_entropy_s": 2.0,
                "ca_cert": str(files.ca_cert),
                "cert": str(files.cert),
                "key": str(files.key),
                **({"crl": str(files.crl)} if files.crl else {}),
            },
        }
        path = node_dir / "node.toml"
        path.write_text(tomli_w.dumps(config))
        return path

    def _start_nodes(self) -> None:
        done = _step(f"starting {self.n} node processes")
        for i in range(self.n):
            # Static mode: each node dials every node started before it -> a full mesh.
            peers = [] if self.mdns else [f"127.0.0.1:{n.sync_port}" for n in self.nodes]
            self.nodes.append(self._spawn(i, self._config(i, peers)))
        done()
        for node in self.nodes:
            _say(
                f"    {node.name}: api {node.api}  sync port {node.sync_port}  pid {node.proc.pid}"
            )
        done = _step("waiting for the nodes to find each other" + (" (mDNS)" if self.mdns else ""))
        _wait(
            lambda: all(n.client.status()["connected_peers"] >= self.n - 1 for n in self.nodes),
            30,
            "the nodes did not all connect",
        )
        done()

    def _spawn(self, i: int, config: Path) -> DemoNode:
        node_dir = self.work / f"node{i}"
        try:
            proc, info = spawn_node(
                # one invocation worker each: three nodes share the demo's cores
                ["--config", str(config), "--workers", "1"],
                node_dir / "ready.json",
                node_dir / "node.log",
            )
        except NodeStartError as exc:
            raise click.ClickException(f"node{i} did not start: {exc}") from exc
        token = (self.work / f"node{i}" / "data" / "admin.token").read_text().strip()
        return DemoNode(
            f"node{i}", proc, info["api"], info["sync_port"], NodeClient(info["api"], token)
        )

    def _deploy(self) -> None:
        first = self.nodes[0]
        for bundle in self.bundles:
            done = _step(f"deploying {bundle.name} to {first.name}")
            first.client.deploy(bundle.wasm, bundle.manifest, bundle.signature)
            done()
        done = _step("waiting for the modules to roll out to every node")

        def rolled_out() -> bool:
            return all(
                {m["name"] for m in n.client.modules() if m["state"] == "active"}
                >= {b.name for b in self.bundles}
                for n in self.nodes
            )

        _wait(rolled_out, 30, "the modules did not reach every node")
        done()

    def _watch(self, node: DemoNode, stop: threading.Event) -> None:
        # Retried until stopped: a watch refused or cut while the node is still busy
        # (a loaded machine, a worker restarting) is opened again, not given up on
        # silently (the burst would then wait for a watcher that never comes).
        while not stop.is_set():
            try:
                for event in node.client.watch("kv"):
                    now = time.perf_counter()
                    for change in event["changes"]:
                        node.arrivals.setdefault(change["key"], now)
                    if stop.is_set():
                        return
            except (EdgestateError, OSError, HTTPException, ValueError) as exc:
                node.watch_error = f"{type(exc).__name__}: {exc}"
            stop.wait(0.2)

    def _burst_and_observe(self) -> None:
        first, others = self.nodes[0], self.nodes[1:]
        stop = threading.Event()
        for node in others:
            t = threading.Thread(target=self._watch, args=(node, stop), daemon=True)
            t.start()
            self._watchers.append(t)
        # Writes made before a watch is open would never show up in it.
        try:
            _wait(
                # 30 s like the other waits: 10 s was seen to run out at load 25.
                lambda: all(n.client.status()["watchers"] >= 1 for n in others),
                30,
                "the watch streams did not open",
            )
        except click.ClickException as exc:
            errors = [f"{n.name}: {n.watch_error}" for n in others if n.watch_error]
            if not errors:
                raise
            raise click.ClickException(f"{exc.message} (last: {'; '.join(errors)})") from exc
        acks: dict[str, float] = {}
        latencies: list[float] = []
        lock = threading.Lock()

        def one(i: int) -> None:
            # Each request: a unique key through kv-echo (timed to every node), a
            # shared counter, and one of 50 sessions (several keys each).
            t0 = time.perf_counter()
            first.client.invoke("kv-echo", f"burst-{i:05d}=value {i}".encode())
            t1 = time.perf_counter()
            first.client.invoke("counter", b"burst")
            first.client.invoke("session-store", f"s{i % 50}".encode())
            with lock:
                acks[f"burst-{i:05d}"] = t1
                latencies.append((t1 - t0) * 1000)

        _say(
            f"  burst: {self.invocations} requests x 3 modules (kv-echo, counter, session-store)"
            f" on {first.name}, {self.concurrency} concurrent clients"
        )
        t0 = time.perf_counter()
        with ThreadPoolExecutor(self.concurrency) as pool:
            list(pool.map(one, range(self.invocations)))
        elapsed = time.perf_counter() - t0
        _say(
            f"    {3 * self.invocations / elapsed:,.0f} invocations/s over HTTP; kv-echo "
            f"median {statistics.median(latencies):.2f} ms, p99 {_p99(latencies):.2f} ms"
        )
        _wait(
            lambda: all(len(n.arrivals) >= len(acks) for n in others),
            30,
            "the writes did not reach every node",
        )
        stop.set()
        _say("  writes arriving on the other nodes (200 OK on node0 -> seen in a watch there):")
        for node in others:
            lags = [(node.arrivals[k] - acks[k]) * 1000 for k in acks]
            _say(
                f"    {node.name}: {len(lags)}/{len(acks)} keys; write-to-visible median "
                f"{statistics.median(lags):.2f} ms, p99 {_p99(lags):.2f} ms, "
                f"max {max(lags):.2f} ms"
            )
        self._check_converged()

    def _check_converged(self) -> None:
        def snapshot(n: DemoNode) -> tuple[Any, ...]:
            return tuple(
                tuple(
                    (i["key"], i["base64"]) for i in n.client.scan(doc, "", None, 10_000)["items"]
                )
                for doc in ("kv", "counters", "sessions")
            )

        def same() -> bool:
            snaps = [snapshot(n) for n in self.nodes]
            return all(s == snaps[0] for s in snaps)

        _wait(same, 30, "the nodes did not converge")
        totals = [n.client.get("counters", "burst")["counter"] for n in self.nodes]
        sessions = len(self.nodes[0].client.scan("sessions", "", None, 10_000)["items"])
        _say(
            f"  converged: documents kv, counters, sessions identical on all {self.n} nodes; "
            f"counters/burst = {totals}; {sessions} session keys"
        )

    def _stop_all(self) -> None:
        if not self.nodes:
            return
        done = _step("stopping every node (SIGTERM, graceful)")
        for node in self.nodes:
            if node.proc.poll() is None:
                node.proc.send_signal(signal.SIGTERM)
        codes = []
        for node in self.nodes:
            try:
                codes.append(node.proc.wait(timeout=30))
            except subprocess.TimeoutExpired:
                node.proc.kill()
                codes.append(node.proc.wait())
        for t in self._watchers:
            t.join(timeout=5)
        done()
        _say(f"    exit codes {codes}; nothing left running")
        for node, code in zip(self.nodes, codes, strict=True):
            if os.environ.get("EDGESTATE_DEMO_DEBUG"):
                for line in (self.work / node.name / "node.log").read_text().splitlines():
                    if "WARNING" in line or "ERROR" in line:
                        _say(f"    {node.name}: {line}")
            if code != 0:
                log = (self.work / node.name / "node.log").read_text(errors="replace")
                _say(f"    {node.name} did not stop cleanly; the end of its log:")
                for line in [x for x in log.splitlines() if "dial " not in x][-25:]:
                    _say(f"      {line}")


def _wait(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except (EdgestateError, OSError, HTTPException):  # a node still starting
            pass
        if time.monotonic() > deadline:
            raise click.ClickException(f"{what} within {timeout:.0f} s")
        time.sleep(0.05)


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
