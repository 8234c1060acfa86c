"""`python -m callback_server` as a real process: the port answers before the lease is free, and
kill -9 under load loses no callback that was answered 200."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp
import pytest

from callback_server.store import LEADER_LEASE, open_store
from stack.processes import free_port
from tests.cb_fakes import API_KEY, API_KEY_LABEL, AUTH
from tests.stack_support import stop
from tests.store_support import PG_URL, PG_URL_ENV, reset_postgres

pytestmark = [pytest.mark.slow, pytest.mark.asyncio]
ROOT = Path(__file__).resolve().parent.parent


@contextmanager
def server_process(db: Path | str, port: int, **env: str) -> Iterator[subprocess.Popen[bytes]]:
    """`python -m callback_server` on the SQLite file `db`, or on the DATABASE_URL `db` names."""
    full_env = {
        **os.environ,
        "DATABASE_URL": db if isinstance(db, str) else f"sqlite:///{db}",
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "LEADER_LEASE_SECONDS": "2",
        "API_KEYS": f"{API_KEY_LABEL}:{API_KEY}",
        **env,
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "callback_server"],
        cwd=ROOT,
        env=full_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        yield proc
    finally:
        stop(proc)
        if proc.stderr:
            proc.stderr.close()


async def get_json(session: aiohttp.ClientSession, url: str) -> tuple[int, dict]:
    async with session.get(url, headers=AUTH) as resp:
        return resp.status, await resp.json()


async def wait_until_up(session: aiohttp.ClientSession, base: str, within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            status, _ = await get_json(session, f"{base}/healthz")
            if status == 200:
                return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.02)
    raise AssertionError("the port never answered")


async def test_port_answers_while_another_instance_holds_the_lease(tmp_path: Path):
    """/healthz answers and /readyz says passive while the lease is held elsewhere; freed → leader."""
    db = tmp_path / "cb.db"
    holder = open_store(f"sqlite:///{db}")
    await holder.open()
    try:
        epoch = await holder.acquire_lease(LEADER_LEASE, "someone-else", 60)
        assert epoch is not None
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        with server_process(db, port):
            async with aiohttp.ClientSession() as session:
                await wait_until_up(session, base)
                _, ready = await get_json(session, f"{base}/readyz")
                assert ready["role"] == "passive"
                async with session.post(
                    f"{base}/callbacks/runpod", json={"id": "p-1", "status": "IN_QUEUE"}
                ) as r:
                    assert r.status == 200  # a passive instance serves every route
                await holder.release_lease(LEADER_LEASE, "someone-else", epoch)
                for _ in range(200):
                    _, ready = await get_json(session, f"{base}/readyz")
                    if ready["role"] == "leader":
                        break
                    await asyncio.sleep(0.05)
                assert ready == {"role": "leader", "store": "ok"}
    finally:
        await holder.close()


async def test_kill_9_under_load_loses_no_acknowledged_callback(tmp_path: Path):
    """Every callback answered 200 before a SIGKILL is on disk, and applied after a restart."""
    db = tmp_path / "cb.db"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    acknowledged: list[str] = []
    with server_process(db, port) as proc:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=32)) as session:
            await wait_until_up(session, base)
            stop = asyncio.Event()
            enough = asyncio.Event()

            async def sender(worker: int) -> None:
                n = 0
                while not stop.is_set():
                    job_id = f"k-{worker}-{n}"
                    n += 1
                    body = {"id": job_id, "status": "COMPLETED", "output": {"n": n}}
                    try:
                        async with session.post(f"{base}/callbacks/runpod", json=body) as resp:
                            if resp.status == 200:
                                acknowledged.append(job_id)
                                if len(acknowledged) >= 300:
                                    enough.set()
                    except (aiohttp.ClientError, OSError):
                        return

            senders = [asyncio.create_task(sender(i)) for i in range(32)]
            await asyncio.wait_for(enough.wait(), 60)
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            stop.set()
            await asyncio.gather(*senders)
    assert len(acknowledged) >= 300
    conn = sqlite3.connect(db)
    try:
        stored = {json.loads(body)["id"] for (body,) in conn.execute("SELECT body FROM callbacks")}
    finally:
        conn.close()
    assert set(acknowledged) <= stored
    # After a restart every acknowledged callback is applied (replayed if the kill cut it short).
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with server_process(db, port):
        async with aiohttp.ClientSession() as session:
            await wait_until_up(session, base)
            await asyncio.sleep(0.5)
            for job_id in acknowledged[-50:] + acknowledged[:20]:
                status, job = await get_json(session, f"{base}/v1/jobs/{job_id}")
                assert status == 200, job_id
                assert job["status"] == "COMPLETED"


@pytest.mark.parametrize(
    "backend",
    [
        "sqlite",
        pytest.param(
            "postgres",
            marks=[pytest.mark.postgres, pytest.mark.skipif(not PG_URL, reason=f"{PG_URL_ENV} is not set")],
        ),
    ],
)
async def test_two_instances_one_leader_and_takeover_after_kill(tmp_path: Path, backend: str):
    """Two instances on one store (SQLite file, or PostgreSQL as replicas run): one leader, one
    passive; kill -9 the leader → the other leads within the lease (2 s) + 2 s."""
    db: Path | str = tmp_path / "cb.db"
    if backend == "postgres":
        assert PG_URL is not None
        await reset_postgres(PG_URL)
        db = PG_URL
    ports = [free_port(), free_port()]
    bases = [f"http://127.0.0.1:{p}" for p in ports]
    with server_process(db, ports[0]) as first, server_process(db, ports[1]) as second:
        async with aiohttp.ClientSession() as session:
            for base in bases:
                await wait_until_up(session, base)
            roles: list[str] = []
            for _ in range(200):
                roles = [(await get_json(session, f"{b}/readyz"))[1]["role"] for b in bases]
                if "leader" in roles:
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(1.0)  # the passive one keeps trying: still only one leader
            roles = [(await get_json(session, f"{b}/readyz"))[1]["role"] for b in bases]
            assert sorted(roles) == ["leader", "passive"]
            leader = roles.index("leader")
            survivor = bases[1 - leader]
            killed = (first, second)[leader]
            killed.send_signal(signal.SIGKILL)
            killed.wait(10)
            killed_at = time.monotonic()
            while time.monotonic() - killed_at < 2 + 2:
                _, ready = await get_json(session, f"{survivor}/readyz")
                if ready["role"] == "leader":
                    break
                await asyncio.sleep(0.05)
            assert ready["role"] == "leader"
