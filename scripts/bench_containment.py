#!/usr/bin/env python3
"""Containment: does a well-behaved module keep serving while others burn their budgets?

On one real `edgestate node` subprocess, in one run, three phases of ``--seconds``
each: the well-behaved module (kv-echo, a durable write per request, 8 keep-alive
clients) alone; then beside 2 clients looping on a module that spins until its
1,000 ms wall budget ends it; then beside 2 clients looping on a module that
calls kv_get of a 1 MiB value until its budget ends it. During each phase one
client polls ``/healthz`` and ``/readyz`` in turn (each every 10 ms; /readyz is
still relayed to the node by a worker, a side-by-side baseline). The prober and
each looping client run in processes of their own, so what they measure is the
node's latency, not this process's event loop's. Printed per phase: the
well-behaved module's req/s (and its share of the alone figure), median and p99;
/healthz median and p99; the looping invocations' count, outcome and elapsed time
(median, p99, max and overrun past the budget, as the client saw it). Then, per
attack, the overrun distribution (p50, p99, max) of the looping invocations
three ways: the guest's own run (its 504's ``X-Edgestate-Execute-Us``: from its start
on its invocation thread until its budget stopped it, what "ends within one
epoch tick" is about; when the loop answered first, how long it had run then),
the HTTP answer as the client saw it, and of that answer the time outside the
guest's run (request to its start on a thread, its stop to the answer read);
and, since the budget counts from the request's arrival, the budget's clock at
the stop (its 504's ``X-Edgestate-Budget-Us``) and the time outside it (the
request reaching the handler, the answer reaching the client).

Then, in this process (no HTTP), the deadline overrun distribution of each
looping module at the runtime level: ``elapsed - budget`` of ``invoke()`` (on
this thread: only the guest's own check), of ``ainvoke()`` (on an invocation
thread, awaited by a loop that may answer first) and of the guest's own run,
over ``--runs`` invocations with a 100 ms budget.

Targets (issue 11): /healthz p99 < 10 ms throughout; the well-behaved module
keeps >= 40 % of its throughput alone with p99 < 50 ms; looping invocations end
within 1,010 ms.

    .venv/bin/python scripts/bench_containment.py [--seconds 5] [--workers N] [--runs 30]
        [--base TREE --rounds N]

``--base TREE`` runs that source tree's node too (``git archive main | tar -x -C
TREE``), ``--rounds`` times each, alternated, and prints every target's figure of
every run side by side. The runtime-level figures are this tree's only.

``--workers N`` (N > 0) sets the node config's ``api.workers`` (invocation worker
processes); 0 (the default) is the in-process node, the only mode before those land.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import wasmtime
from bench_containment_runtime import FUEL, REPO, WAT, manifest, runtime_overruns

BUDGET_MS = 1000
TICK_MS = 2.0  # RuntimeConfig.epoch_tick_ms: "ends within one tick of its budget"
GOOD_CLIENTS = 8
HEALTH_INTERVAL_S = 0.01
# /healthz is polled from its own process, so its latency is the node's and not
# that of this process's event loop, busy driving the other clients. /readyz
# alternates with it: with workers it is still relayed to the node, so the two
# side by side show what answering /healthz in the worker saves.
HEALTH_PROBER = r"""
import http.client, json, sys, time
host, port = sys.argv[1], int(sys.argv[2])
seconds, interval = float(sys.argv[3]), float(sys.argv[4])
conn = http.client.HTTPConnection(host, port, timeout=30)
out, relayed, stop = [], [], time.perf_counter() + seconds
while time.perf_counter() < stop:
    for path, into in (("/healthz", out), ("/readyz", relayed)):
        t0 = time.perf_counter()
        conn.request("GET", path); conn.getresponse().read()
        into.append((time.perf_counter() - t0) * 1000)
        time.sleep(interval / 2)
print(json.dumps([out, relayed]))
"""
# The looping invocations' clients, one process each, for the same reason: in this
# process their answers also waited for its loop, busy with the kv-echo clients,
# which is the client's delay, not the node's. Blocking http.client on one
# keep-alive connection: nothing else runs in the process.
ATTACKER = r"""
import http.client, json, sys, time
host, port, module, seconds = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
conn = http.client.HTTPConnection(host, port, timeout=60)
out, stop = [], time.perf_counter() + seconds
while time.perf_counter() < stop:
    t0 = time.perf_counter()
    conn.request("POST", "/v1/invoke/" + module, body=b"")
    resp = conn.getresponse()
    body = resp.read()
    ms = (time.perf_counter() - t0) * 1000
    run = resp.getheader("X-Edgestate-Execute-Us")
    budget = resp.getheader("X-Edgestate-Budget-Us")  # absent before it was counted from arrival
    code = "ok"
    if resp.status != 200:
        error = json.loads(body)["error"]
        # Answered by the worker's loop before the guest's thread stopped it?
        code = error["code"] + (" (loop)" if "by its caller" in error["message"] else "")
    out.append([ms, None if run is None else float(run) / 1000, code,
                None if budget is None else float(budget) / 1000])
print(json.dumps(out))
"""


def p(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass
class Phase:
    name: str
    good_rps: float = 0.0
    good_ms: list[float] = field(default_factory=list)
    good_errors: dict[str, int] = field(default_factory=dict)
    health_ms: list[float] = field(default_factory=list)
    ready_ms: list[float] = field(default_factory=list)
    loop_ms: list[float] = field(default_factory=list)
    # The guest's own run (X-Edgestate-Execute-Us of each 504): start on its thread to stop.
    run_ms: list[float] = field(default_factory=list)
    # Of each 504's HTTP answer, the time outside the guest's run: request to its
    # start on a thread, and its stop to the answer read by the client.
    outside_ms: list[float] = field(default_factory=list)
    # The budget's clock at the stop (X-Edgestate-Budget-Us: from the request's
    # arrival, its body read) and, of the HTTP answer, the time outside it: the
    # request reaching the worker's handler, the answer reaching the client.
    budget_ms: list[float] = field(default_factory=list)
    outside_budget_ms: list[float] = field(default_factory=list)
    loop_outcomes: dict[str, int] = field(default_factory=dict)


def start_node(
    work: Path, workers: int, admission: list[str], env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    from edgestate.client import NodeClient
    from edgestate.devkit import example_bundle, make_publisher, spawn_node

    data = work / "node"
    data.mkdir()
    publisher = make_publisher(work / "publisher", fuel=FUEL, wall_time_ms=BUDGET_MS)
    shutil.copy(publisher.policy_path, data / "trust-policy.json")
    args = ["--data", str(data), "--api-port", "0", "--sync-port", "0", "--no-mdns"]
    text = f"[api]\nworkers = {workers}\n" if workers > 0 else ""
    if admission:
        text += "[runtime.admission]\n" + "".join(f"{a}\n" for a in admission)
    if text:
        config = work / "node.toml"
        config.write_text(text)
        args += ["--config", str(config)]
    proc, info = spawn_node(
        [*args, "--log-level", "warning"], work / "ready.json", work / "node.log", env=env
    )
    api = str(info["api"])
    client = NodeClient(api, (data / "admin.token").read_text().strip())
    bundle = example_bundle("kv_echo", publisher, REPO / "build" / "guest-wasm")
    client.deploy(bundle.wasm, bundle.manifest, bundle.signature)
    client.put("bench", "big", b"x" * (1 << 20), create=True)
    for wat, m in (
        ("infinite_loop", manifest("spin", BUDGET_MS)),
        ("kv_get_forever", manifest("hostloop", BUDGET_MS, 20, ("bench",))),
        # Small fuel: bounded by fuel to ~10 ms of guest code, which the sandbox
        # runs holding the GIL (see sandbox.GIL_HOLD_MAX_FUEL).
        ("infinite_loop", manifest("fuel", BUDGET_MS, fuel=10_000_000)),
    ):
        wasm = wasmtime.wat2wasm((WAT / f"{wat}.wat").read_text())
        client.deploy(wasm, m, publisher.sign(wasm, m))
    return proc, api


async def run_phase(url: str, name: str, attacker: str | None, seconds: float) -> Phase:
    phase = Phase(name)
    stop = time.perf_counter() + seconds
    connector = aiohttp.TCPConnector(limit=GOOD_CLIENTS + 4)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def good(w: int) -> int:
            n = 0
            while time.perf_counter() < stop:
                t0 = time.perf_counter()
                async with session.post(
                    f"{url}/v1/invoke/kv-echo", data=f"w{w}-{n % 1000}=v{n}".encode()
                ) as resp:
                    body = await resp.read()
                if resp.status == 200:
                    phase.good_ms.append((time.perf_counter() - t0) * 1000)
                    n += 1
                else:
                    # A 504 the worker's loop answered is told apart from its thread's.
                    loop = resp.status == 504 and b"by its caller" in body
                    status = f"{resp.status}{' (loop)' if loop else ''}"
                    phase.good_errors[status] = phase.good_errors.get(status, 0) + 1
            return n

        async def health() -> None:
            host, port = url.removeprefix("http://").rsplit(":", 1)
            prober = await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                HEALTH_PROBER,
                host,
                port,
                str(seconds),
                str(HEALTH_INTERVAL_S),
                stdout=asyncio.subprocess.PIPE,
            )
            out, _ = await prober.communicate()
            phase.health_ms, phase.ready_ms = json.loads(out)

        async def attack(module: str, seconds: float) -> None:
            # Keeps looping until its time is up; the last one may end after the phase.
            host, port = url.removeprefix("http://").rsplit(":", 1)
            client = await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                ATTACKER,
                host,
                port,
                module,
                str(seconds),
                stdout=asyncio.subprocess.PIPE,
            )
            out, _ = await client.communicate()
            for ms, run, code, budget in json.loads(out):
                phase.loop_ms.append(ms)
                if run is not None:
                    phase.run_ms.append(run)
                    phase.outside_ms.append(ms - run)
                if budget is not None:
                    phase.budget_ms.append(budget)
                    phase.outside_budget_ms.append(ms - budget)
                phase.loop_outcomes[code] = phase.loop_outcomes.get(code, 0) + 1

        # Started 0.2 s before the phase and running its whole length.
        tasks = [attack(attacker, seconds + 0.2) for _ in range(2)] if attacker else []
        attackers = [asyncio.ensure_future(t) for t in tasks]
        if attackers:
            await asyncio.sleep(0.2)  # both looping invocations are running first
            stop = time.perf_counter() + seconds
        started = time.perf_counter()
        served, _ = await asyncio.gather(
            asyncio.gather(*(good(w) for w in range(GOOD_CLIENTS))), health()
        )
        phase.good_rps = sum(served) / (time.perf_counter() - started)
        await asyncio.gather(*attackers)
    return phase


def verdict(ok: bool) -> str:
    return "MET " if ok else "MISS"


Summary = dict[str, tuple[float, float, float, float]]


def node_phases(args: argparse.Namespace, label: str, env: dict[str, str] | None) -> Summary:
    """One run of the four phases on a node of tree ``label``; per phase, the
    targets' figures: /healthz p99, kv-echo share and p99, looping max (HTTP)."""
    work = Path(tempfile.mkdtemp(prefix="bench-containment-"))
    proc, url = start_node(work, args.workers, args.admission, env)
    load = os.getloadavg()[0]
    try:
        phases = [
            asyncio.run(run_phase(url, name, attacker, args.seconds))
            for name, attacker in (
                ("alone", None),
                ("2 x spin", "spin"),
                ("2 x hostloop", "hostloop"),
                ("2 x fuel 10M", "fuel"),
            )
        ]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)
    load = max(load, os.getloadavg()[0])
    alone = phases[0].good_rps
    threads = ", ".join(args.admission) or "defaults"
    print(f"=== {label}: load average (1 min, max of start and end) {load:.2f}")
    print("hz: /healthz (answered by the worker with workers > 0); rz: /readyz (relayed)")
    print(
        f"workers = {args.workers}, admission {threads}, {GOOD_CLIENTS} kv-echo "
        f"clients, {args.seconds:g} s per phase"
    )
    print(
        f"{'phase':<14}{'req/s':>8}{'share':>7}{'p50 ms':>8}{'p99 ms':>8}{'errors':>8}"
        f"{'hz p50':>8}{'hz p99':>8}{'rz p99':>8}{'loops':>6}{'loop p50':>9}{'loop max':>9}"
        "  outcomes"
    )
    for ph in phases:
        print(
            f"{ph.name:<14}{ph.good_rps:>8.0f}{ph.good_rps / alone:>7.0%}"
            f"{p(ph.good_ms, 0.5):>8.1f}{p(ph.good_ms, 0.99):>8.1f}"
            f"{sum(ph.good_errors.values()):>8}"
            f"{p(ph.health_ms, 0.5):>8.1f}{p(ph.health_ms, 0.99):>8.1f}"
            f"{p(ph.ready_ms, 0.99):>8.1f}{len(ph.loop_ms):>6}"
            f"{p(ph.loop_ms, 0.5):>9.1f}{max(ph.loop_ms, default=float('nan')):>9.1f}  "
            f"{ph.loop_outcomes or ''} {ph.good_errors or ''}"
        )
    print()
    print(
        f"looping invocations past their {BUDGET_MS} ms budget (ms): the guest's own run"
        " (server, X-Edgestate-Execute-Us), the HTTP answer (client) and, of that"
        " answer, the time outside the guest's run (before its start, after its stop)"
    )
    for ph in phases[1:3]:
        for what, values in (
            ("guest run", ph.run_ms),
            ("budget clock", ph.budget_ms),
            ("HTTP answer", ph.loop_ms),
            ("outside run", [v + BUDGET_MS for v in ph.outside_ms]),
            ("outside budg", [v + BUDGET_MS for v in ph.outside_budget_ms]),
        ):
            if not values:
                continue
            over = [v - BUDGET_MS for v in values]
            print(
                f"  {ph.name:<14}{what:<13}n {len(over):>3}  p50 {p(over, 0.5):6.2f}"
                f"  p99 {p(over, 0.99):6.2f}  max {max(over, default=float('nan')):6.2f}"
            )
    print()
    for ph in phases:
        hz = p(ph.health_ms, 0.99)
        print(f"{verdict(hz < 10)}  {ph.name}: /healthz p99 {hz:.1f} ms (target < 10)")
    for ph in phases[1:]:
        share, p99 = ph.good_rps / alone, p(ph.good_ms, 0.99)
        print(f"{verdict(share >= 0.4)}  {ph.name}: kv-echo keeps {share:.0%} (target >= 40%)")
        print(f"{verdict(p99 < 50)}  {ph.name}: kv-echo p99 {p99:.1f} ms (target < 50)")
        worst = max(ph.loop_ms, default=float("nan"))
        print(
            f"{verdict(worst <= 1010)}  {ph.name}: looping invocations max {worst:.1f} ms"
            " (target <= 1010, HTTP answer)"
        )
        # By the budget's clock where the node says it (from the request's arrival),
        # else by the guest's own run (the budget counted from its start before).
        clock, values = ("budget clock", ph.budget_ms) if ph.budget_ms else ("guest run", ph.run_ms)
        if values:
            ran = max(values)
            print(
                f"{verdict(ran <= BUDGET_MS + TICK_MS)}  {ph.name}: {clock} max {ran:.1f} ms"
                f" (target <= {BUDGET_MS + TICK_MS:g}: one {TICK_MS:g} ms epoch tick)"
            )
    print()
    return {
        ph.name: (
            p(ph.health_ms, 0.99),
            ph.good_rps / alone,
            p(ph.good_ms, 0.99),
            max(ph.loop_ms, default=float("nan")),
        )
        for ph in phases
    }


def side_by_side(runs: dict[str, list[Summary]]) -> None:
    """Each target's figure per tree, one column per run (rounds alternated)."""
    print("side by side (one value per run, in run order):")
    names = list(next(iter(runs.values()))[0])
    for i, what in enumerate(("/healthz p99 ms", "kv-echo share", "kv-echo p99 ms", "loop max ms")):
        for name in names:
            if what != "/healthz p99 ms" and name == "alone":
                continue
            for label, summaries in runs.items():
                cells = " ".join(
                    f"{s[name][i]:.0%}" if i == 1 else f"{s[name][i]:.1f}" for s in summaries
                )
                print(f"  {what:<16}{name:<14}{label:<6}{cells}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--overrun-budget-ms", type=int, default=100)
    parser.add_argument("--skip-node", action="store_true", help="only the runtime-level overruns")
    parser.add_argument(
        "--admission",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a [runtime.admission] setting, e.g. threads=0 (on the loop); repeatable",
    )
    parser.add_argument(
        "--base",
        metavar="TREE",
        help="also run that source tree's node (e.g. git archive main | tar -x -C TREE), "
        "rounds alternated with this tree's, for before/after side by side",
    )
    parser.add_argument("--rounds", type=int, default=1, help="node runs per tree")
    args = parser.parse_args()
    if not args.skip_node:
        trees: list[tuple[str, dict[str, str] | None]] = [("this", None)]
        if args.base:
            base = str(Path(args.base).resolve())
            trees.append(("base", {**os.environ, "PYTHONPATH": base, "PYTHONSAFEPATH": "1"}))
        runs: dict[str, list[Summary]] = {label: [] for label, _ in trees}
        for _ in range(args.rounds):
            for label, env in trees:
                runs[label].append(node_phases(args, label, env))
        side_by_side(runs)
        print()
    budget = args.overrun_budget_ms
    print(
        f"runtime-level deadline overrun, elapsed - budget ({args.runs} runs, {budget} ms budget):"
    )
    for name, values in runtime_overruns(args.runs, budget).items():
        print(
            f"  {name:<38} p50 {statistics.median(values):6.2f} ms  p99 {p(values, 0.99):6.2f} ms"
            f"  max {max(values):6.2f} ms  min {min(values):6.2f} ms"
        )


if __name__ == "__main__":
    main()
