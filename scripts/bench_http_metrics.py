#!/usr/bin/env python3
"""What the API middleware's request id, HTTP metrics and access line cost per request.

    .venv/bin/python scripts/bench_http_metrics.py [--requests 2000] [--rounds 7]

Two measures, side by side in one run:

* per request, end to end: keep-alive requests to real aiohttp servers on
  127.0.0.1, interleaved block by block (so a noisy moment hits them all alike):
  ``bare`` (a handler, no middleware), ``node`` (the node's middleware as it
  runs, access log off) and ``node+access`` (access log on, written to a file);
  median and p99 of each;
* the bookkeeping alone: the calls the middleware adds (request id, context
  variable, ``observe``), timed on a real request inside a handler; ns per call.
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp
import click
from aiohttp import web

from edgestate.node.api import api_middleware
from edgestate.node.api.observe import observe, stamp_request_id
from edgestate.node.config import ApiConfig
from edgestate.node.http_metrics import HttpMetrics
from edgestate.node.logs import ACCESS_LOGGER, new_request_id, request_id


class _Node:
    """The parts of a node the middleware reads (the Guarded protocol), nothing else."""

    def __init__(self, access_log: bool) -> None:
        self.admin_token = "t" * 32
        self.token_path = Path("/dev/null")
        self.api_config = ApiConfig(access_log=access_log)
        self.http = HttpMetrics()
        self.draining = False
        self.ready = True

    def count_http_error(self, code: str) -> None:
        pass

    def count_request(self, route: str, method: str, status: int, seconds: float) -> None:
        self.http.observe(route, method, status, seconds)


async def _hello(request: web.Request) -> web.Response:
    return web.Response(body=b"ok")


def _app(kind: str) -> web.Application:
    if kind == "bare":
        app = web.Application()
    else:
        app = web.Application(middlewares=[api_middleware(_Node(kind == "node+access"))])
        app.on_response_prepare.append(stamp_request_id)  # as build_app does
    app.router.add_get("/v1/hello/{name}", _hello)
    return app


async def _serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}/v1/hello/x"


async def _end_to_end(requests: int, rounds: int) -> dict[str, list[float]]:
    kinds = ["bare", "node", "node+access"]
    served = {k: await _serve(_app(k)) for k in kinds}
    times: dict[str, list[float]] = {k: [] for k in kinds}
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(rounds):
                for kind in kinds:
                    url = served[kind][1]
                    for _ in range(requests // rounds):
                        start = time.perf_counter()
                        async with session.get(url) as resp:
                            await resp.read()
                        times[kind].append(time.perf_counter() - start)
    finally:
        for runner, _ in served.values():
            await runner.cleanup()
    return times


async def _bookkeeping(calls: int, rounds: int) -> list[float]:
    http = HttpMetrics()
    per_call: list[float] = []

    async def handler(request: web.Request) -> web.Response:
        response = web.Response(body=b"ok")
        for _ in range(rounds):
            start = time.perf_counter_ns()
            for _ in range(calls):
                t0 = time.perf_counter()
                rid = new_request_id(request.headers.get("X-Request-Id"))
                token = request_id.set(rid)
                observe(http.observe, False, request, response, 200, time.perf_counter() - t0)
                request_id.reset(token)
            per_call.append((time.perf_counter_ns() - start) / calls)
        return response

    app = web.Application()
    app.router.add_get("/v1/hello/{name}", handler)
    runner, url = await _serve(app)
    try:
        async with aiohttp.ClientSession() as session, session.get(url) as resp:
            await resp.read()
    finally:
        await runner.cleanup()
    return per_call


def _p99(values: list[float]) -> float:
    return sorted(values)[max(0, int(len(values) * 0.99) - 1)]


@click.command()
@click.option("--requests", default=2000, show_default=True, help="Requests per server.")
@click.option("--rounds", default=7, show_default=True, help="Interleaved blocks.")
def main(requests: int, rounds: int) -> None:
    """Print median and p99 per request of each server, and the bookkeeping's ns/call."""
    with tempfile.TemporaryDirectory() as tmp:
        handler = logging.FileHandler(Path(tmp) / "access.log")
        access = logging.getLogger(ACCESS_LOGGER)
        access.addHandler(handler)
        access.setLevel(logging.INFO)
        access.propagate = False
        times = asyncio.run(_end_to_end(requests, rounds))
        handler.close()
    print(f"per request, {requests} keep-alive requests each, {rounds} interleaved blocks:")
    base = statistics.median(times["bare"])
    for kind, values in times.items():
        median = statistics.median(values)
        print(
            f"  {kind:12s} median {median * 1e6:7.1f} us   p99 {_p99(values) * 1e6:7.1f} us"
            f"   (+{(median - base) * 1e6:5.1f} us over bare)"
        )
    per_call = asyncio.run(_bookkeeping(10_000, 21))
    print(
        f"bookkeeping alone (request id + context variable + observe), 21 x 10,000 calls: "
        f"median {statistics.median(per_call):.0f} ns, p99 {_p99(per_call):.0f} ns per request"
    )


if __name__ == "__main__":
    main()
