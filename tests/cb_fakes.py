"""Fakes of the callback server's outside peers, as small real aiohttp apps on loopback.

FakeRunPod speaks RunPod's cloud API (GET /status) or its local dev server (POST /status runs the
job and posts `{"output": …}` to the job's webhook); WebhookSink records client webhooks. `Harness`
builds our app on a real SQLite store in a temp dir and starts its background work.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import sqlite3
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from callback_server.app import create_app, start_background
from callback_server.runtime import RUNTIME, Runtime
from callback_server.settings import ApiKey, ServerSettings
from callback_server.store import open_store
from tests.store_support import table_rows

#: The job API key every harness is configured with, and that its client sends.
API_KEY = "test-key-0123456789abcdef"
API_KEY_LABEL = "tests"
AUTH = {"Authorization": f"Bearer {API_KEY}"}


@dataclass
class FakeRunPod:
    local: bool = False
    calls: list[tuple[str, str]] = field(default_factory=list)  # (method, path)
    submitted: list[dict[str, Any]] = field(default_factory=list)
    bodies: dict[str, dict[str, Any]] = field(default_factory=dict)  # id → the /run body
    statuses: dict[str, dict[str, Any]] = field(default_factory=dict)  # id → cloud status envelope
    status_delay_s: float = 0.0
    # Awaited with the new job's id and the /run body before /run answers (a worker that reports
    # before the submitting request has stored the job).
    before_answer: Callable[[str, dict[str, Any]], Awaitable[None]] | None = None
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))

    def calls_to(self, prefix: str) -> int:
        return sum(1 for _m, p in self.calls if p.startswith(prefix))

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/run", self._run)
        app.router.add_route("*", "/status/{id}", self._status)
        app.router.add_post("/cancel/{id}", self._cancel)
        app.router.add_post("/retry/{id}", self._retry)
        return app

    async def _run(self, request: web.Request) -> web.Response:
        self.calls.append((request.method, request.path))
        body = await request.json()
        self.submitted.append(body)
        job_id = f"{'test-' if self.local else 'rp-'}{next(self._ids)}"
        self.statuses[job_id] = {"id": job_id, "status": "IN_QUEUE"}
        self.bodies[job_id] = body
        if self.before_answer is not None:
            await self.before_answer(job_id, body)
        status = "IN_PROGRESS" if self.local else "IN_QUEUE"
        return web.json_response({"id": job_id, "status": status})

    async def _status(self, request: web.Request) -> web.Response:
        self.calls.append((request.method, request.path))
        job_id = request.match_info["id"]
        if self.status_delay_s:
            await asyncio.sleep(self.status_delay_s)
        if self.local:
            if request.method != "POST":
                return web.json_response({"detail": "Method Not Allowed"}, status=405)
            submitted = self.bodies.get(job_id)
            if job_id not in self.statuses or submitted is None:
                return web.json_response({"id": job_id, "status": "FAILED", "error": "Job ID not found"})
            del self.statuses[job_id]
            result = {"job_id": job_id, "files": {"glb": f"s3://bucket/{job_id}/model.glb"}}
            if submitted.get("webhook"):
                async with aiohttp.ClientSession() as session:
                    await session.post(submitted["webhook"], json={"output": result})
            return web.json_response({"id": job_id, "status": "COMPLETED", "output": result})
        if request.method != "GET":
            return web.json_response({"detail": "Method Not Allowed"}, status=405)
        if job_id not in self.statuses:
            return web.json_response({"error": "not found"}, status=404)
        return web.json_response(self.statuses[job_id])

    async def _cancel(self, request: web.Request) -> web.Response:
        self.calls.append((request.method, request.path))
        job_id = request.match_info["id"]
        self.statuses[job_id] = {"id": job_id, "status": "CANCELLED"}
        return web.json_response({"id": job_id, "status": "CANCELLED"})

    async def _retry(self, request: web.Request) -> web.Response:
        self.calls.append((request.method, request.path))
        job_id = request.match_info["id"]
        if job_id not in self.statuses:
            return web.json_response({"error": "not found"}, status=404)
        self.statuses[job_id] = {"id": job_id, "status": "IN_QUEUE"}
        return web.json_response({"id": job_id, "status": "IN_QUEUE"})


@dataclass
class WebhookSink:
    statuses: list[int] = field(default_factory=list)  # answered in turn, then 200
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        return app

    async def _hook(self, request: web.Request) -> web.Response:
        self.received.append((dict(request.headers), await request.read()))
        self.arrived.set()
        return web.Response(status=self.statuses.pop(0) if self.statuses else 200)


@dataclass
class Harness:
    client: TestClient
    runtime: Runtime
    db_path: Path
    database_url: str | None = None  # set when the store is not the SQLite file at db_path

    def callbacks(self) -> list[sqlite3.Row]:
        """Every recorded callback, read straight from the SQLite file."""
        conn = sqlite3.connect(self.db_path)
        conn.row_factory = sqlite3.Row
        try:
            return conn.execute("SELECT * FROM callbacks ORDER BY id").fetchall()
        finally:
            conn.close()

    async def callback_rows(self) -> list[dict[str, Any]]:
        """Every recorded callback as a dict, from whichever store the app runs on."""
        return await table_rows(self.database_url or f"sqlite:///{self.db_path}", "callbacks")

    async def job(self, job_id: str) -> dict[str, Any]:
        resp = await self.client.get(f"/v1/jobs/{job_id}")
        assert resp.status == 200, await resp.text()
        return await resp.json()

    async def post(self, path: str, body: Any, **kwargs: Any) -> aiohttp.ClientResponse:
        data = body if isinstance(body, (bytes, str)) else json.dumps(body)
        if path.startswith("/v1/") and "headers" not in kwargs:
            kwargs["headers"] = {"Content-Type": "application/json"}
        return await self.client.post(path, data=data, **kwargs)


HarnessMaker = Callable[..., Awaitable[Harness]]


def base_settings(**overrides: Any) -> ServerSettings:
    defaults: dict[str, Any] = {"host": "127.0.0.1", "port": 0, "allow_private_webhooks": True}
    defaults["api_keys"] = (ApiKey(API_KEY_LABEL, API_KEY),)
    defaults["lease_s"] = 3.0
    defaults.update(overrides)
    return replace(ServerSettings(), **defaults)


async def start_harness(
    tmp_path: Path,
    settings: ServerSettings,
    *,
    db_path: Path | None = None,
    database_url: str | None = None,
    **app_kwargs: Any,
) -> Harness:
    """Our app on a fresh SQLite file, or on `db_path` (several harnesses on one file are replicas),
    or on the store at `database_url` (PostgreSQL)."""
    db_path = db_path or tmp_path / f"cb-{next(_db_numbers)}.db"
    url = database_url or f"sqlite:///{db_path}"
    store = open_store(url, max_body_bytes=settings.max_body_bytes)
    app = create_app(settings, store, **app_kwargs)
    client = TestClient(TestServer(app), headers=AUTH)  # the job API's key on every request
    await client.start_server()
    start_background(app)
    runtime = app[RUNTIME]
    await asyncio.wait_for(runtime.store_ready.wait(), 10)
    return Harness(client, runtime, db_path, database_url)


_db_numbers = itertools.count()


async def close_harness(harness: Harness, within: float = 10.0) -> None:
    """Stop the app; if shutdown hangs, fail with every pending task's stack rather than hang."""
    closing = asyncio.ensure_future(harness.client.close())
    done, _ = await asyncio.wait({closing}, timeout=within)
    if not done:
        stacks = io.StringIO()
        for task in asyncio.all_tasks():
            print(f"--- {task.get_name()}", file=stacks)
            task.print_stack(limit=12, file=stacks)
        raise AssertionError(f"shutdown did not finish in {within} s:\n{stacks.getvalue()}")
    closing.result()


class ServedApp:
    """Our app and a fake RunPod served from a loop in a thread (schemathesis calls synchronously)."""

    def __init__(self, db: Path) -> None:
        self.db = db
        self.loop = asyncio.new_event_loop()
        self.base_url = ""
        self._runners: list[web.AppRunner] = []
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    async def _start(self) -> None:
        fake = web.AppRunner(FakeRunPod().app())
        await fake.setup()
        fake_site = web.TCPSite(fake, "127.0.0.1", 0)
        await fake_site.start()
        upstream = f"http://127.0.0.1:{fake.addresses[0][1]}"
        app = create_app(base_settings(runpod_endpoint_url=upstream), open_store(f"sqlite:///{self.db}"))
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        start_background(app)
        await asyncio.wait_for(app[RUNTIME].store_ready.wait(), 10)
        self._runners = [runner, fake]
        self.base_url = f"http://127.0.0.1:{runner.addresses[0][1]}"

    async def _stop(self) -> None:
        for runner in self._runners:
            await runner.cleanup()

    def __enter__(self) -> ServedApp:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(30)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


class CbEnv:
    """Apps the test serves (`serve`, `upstream` for a fake RunPod) and callback servers
    (`harness`), all closed by `close`."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self._servers: list[TestServer] = []
        self._harnesses: list[Harness] = []

    async def serve(self, app: web.Application) -> TestServer:
        server = TestServer(app)
        await server.start_server()
        self._servers.append(server)
        return server

    async def upstream(self, fake: FakeRunPod) -> str:
        return str((await self.serve(fake.app())).make_url("")).rstrip("/")

    async def harness(self, **kwargs: Any) -> Harness:
        app_kwargs = {k: kwargs.pop(k) for k in ("clock", "db_path") if k in kwargs}
        h = await start_harness(self.tmp_path, base_settings(**kwargs), **app_kwargs)
        self._harnesses.append(h)
        return h

    async def close(self) -> None:
        for h in self._harnesses:
            await close_harness(h)
        for server in self._servers:
            await server.close()
