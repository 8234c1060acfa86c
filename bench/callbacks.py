"""Durable callback ingestion and port-open time: our server (SQLite) vs a bare aiohttp app, one run.

Ingestion: 32 connections post RunPod envelopes with unique job ids for a fixed time; each
callback is answered only after its body and the job's change are committed. The baseline is a
bare aiohttp handler that reads the body and answers 200. Port-open: process start until
/healthz answers, with another instance holding the leader lease, against the bare app's start
until it answers. Prints the figures and the ratios (goals: ingestion ≥ 0.5×, port-open ≤ 1.5×).

    .venv/bin/python bench/callbacks.py [--seconds 5] [--connections 32] [--starts 5]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from callback_server.store import LEADER_LEASE, open_store  # noqa: E402

BARE_APP = """
import sys
from aiohttp import web

async def ok(request):
    await request.read()
    return web.json_response({"received": True})

async def health(request):
    return web.json_response({"status": "ok"})

app = web.Application(client_max_size=64 * 1024 * 1024)
app.router.add_post("/callbacks/{provider}", ok)
app.router.add_get("/healthz", health)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(kind: str, port: int, db: Path) -> subprocess.Popen[bytes]:
    if kind == "bare":
        cmd = [sys.executable, "-c", BARE_APP, str(port)]
        env = dict(os.environ)
    else:
        cmd = [sys.executable, "-m", "callback_server"]
        env = {**os.environ, "DATABASE_URL": f"sqlite:///{db}", "PORT": str(port), "HOST": "127.0.0.1"}
        env["LOG_LEVEL"] = "WARNING"
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


async def wait_healthy(session: aiohttp.ClientSession, port: int, within: float = 30.0) -> float:
    """Seconds until /healthz answers 200 (polled every millisecond)."""
    started = time.perf_counter()
    while time.perf_counter() - started < within:
        try:
            async with session.get(f"http://127.0.0.1:{port}/healthz") as resp:
                if resp.status == 200:
                    return time.perf_counter() - started
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.001)
    raise RuntimeError(f"port {port} never answered")


async def port_open_time(kind: str, db: Path) -> float:
    port = free_port()
    async with aiohttp.ClientSession() as session:
        started = time.perf_counter()
        proc = start(kind, port, db)
        try:
            await wait_healthy(session, port)
            return time.perf_counter() - started
        finally:
            stop(proc)


async def load(port: int, seconds: float, connections: int, tag: str) -> tuple[float, list[float]]:
    """Callbacks/s answered 200 and each one's latency (s)."""
    ids = itertools.count()
    latencies: list[float] = []
    failures = 0
    url = f"http://127.0.0.1:{port}/callbacks/runpod"
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector) as session:
        deadline = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal failures
            while time.perf_counter() < deadline:
                n = next(ids)
                body = json.dumps({"id": f"{tag}-{n}", "status": "COMPLETED", "output": {"n": n}}).encode()
                t0 = time.perf_counter()
                async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as r:
                    await r.read()
                    if r.status == 200:
                        latencies.append(time.perf_counter() - t0)
                    else:
                        failures += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(connections)))
        elapsed = time.perf_counter() - started
    if failures:
        raise RuntimeError(f"{failures} callbacks were not answered 200")
    return len(latencies) / elapsed, latencies


def p(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[q - 1] if len(values) > 1 else values[0]


async def ingestion(kind: str, db: Path, seconds: float, connections: int) -> tuple[float, float, float]:
    port = free_port()
    proc = start(kind, port, db)
    try:
        async with aiohttp.ClientSession() as session:
            await wait_healthy(session, port)
            if kind == "ours":  # the store opens in the background after the port: wait for it
                for _ in range(1000):
                    async with session.get(f"http://127.0.0.1:{port}/readyz") as resp:
                        if resp.status == 200:
                            break
                    await asyncio.sleep(0.01)
        await load(port, 1.0, connections, f"warm-{kind}")
        rate, latencies = await load(port, seconds, connections, kind)
        return rate, p(latencies, 50) * 1000, p(latencies, 99) * 1000
    finally:
        stop(proc)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--starts", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.db"
        bare = await ingestion("bare", db, args.seconds, args.connections)
        ours = await ingestion("ours", db, args.seconds, args.connections)
        print(f"ingestion, {args.connections} connections, {args.seconds:g} s (callbacks/s, p50 ms, p99 ms)")
        print(f"  bare aiohttp 200      {bare[0]:9.0f}  {bare[1]:7.2f}  {bare[2]:7.2f}")
        print(f"  ours (SQLite, durable) {ours[0]:8.0f}  {ours[1]:7.2f}  {ours[2]:7.2f}")
        print(f"  throughput ratio ours/bare: {ours[0] / bare[0]:.2f}  (goal >= 0.5)")

        holder = open_store(f"sqlite:///{db}")
        await holder.open()
        try:
            assert await holder.acquire_lease(LEADER_LEASE, "bench-holder", 600) is not None
            bare_t = [await port_open_time("bare", db) for _ in range(args.starts)]
            ours_t = [await port_open_time("ours", db) for _ in range(args.starts)]
        finally:
            await holder.close()
        b, o = statistics.median(bare_t), statistics.median(ours_t)
        print(f"port-open from process start, median of {args.starts} (lease held by another instance)")
        print(f"  bare {b * 1000:.0f} ms, ours {o * 1000:.0f} ms, ratio {o / b:.2f}  (goal <= 1.5)")


if __name__ == "__main__":
    asyncio.run(main())
