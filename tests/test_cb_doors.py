"""The callback server as a real process, tried as an attacker on loopback would: who may submit,
read and cancel (API keys), which callbacks may change which job (per-job credentials), what the
logs keep (no secrets). RunPod is a loopback fake (tests/cb_fakes.py) served from this test's loop."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
import pytest_asyncio
from aiohttp.test_utils import TestServer
from standardwebhooks.webhooks import Webhook

from orfeas_contract.events import EventType, make_event
from stack.processes import free_port
from tests.cb_fakes import FakeRunPod
from tests.stack_support import stop

pytestmark = pytest.mark.asyncio  # each test about a second: run by default
ROOT = Path(__file__).resolve().parent.parent
KEY = "doors-key-0123456789abcdef"
OTHER_KEY = "doors-other-key-0123456789"
TOKEN = "master-callback-token-0123456789"
SECRET = "whsec_" + "bWFzdGVyLXNpZ25pbmcta2V5LWZvci10aGUtZG9vcnM="  # 30 bytes


@dataclass
class Server:
    base: str
    proc: subprocess.Popen[bytes]
    db: Path
    log: Path
    fake: FakeRunPod

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def callbacks(self) -> list[sqlite3.Row]:
        with sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=5) as conn:
            conn.row_factory = sqlite3.Row
            return conn.execute("SELECT * FROM callbacks ORDER BY id").fetchall()


@contextmanager
def _process(
    tmp_path: Path, port: int, env: dict[str, str]
) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    log = tmp_path / f"server-{port}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "callback_server"],
            cwd=ROOT,
            env={**os.environ, "HOST": "127.0.0.1", "PORT": str(port), "LEADER_LEASE_SECONDS": "2", **env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield proc, log
    finally:
        stop(proc)


async def _up(base: str) -> None:
    deadline = time.monotonic() + 20
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            try:
                async with session.get(f"{base}/readyz") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    raise AssertionError("the server never became ready")


@pytest_asyncio.fixture
async def start(tmp_path: Path) -> AsyncIterator[Any]:
    """start(**env) → a running server process on a fresh SQLite file, with a fake RunPod."""
    stack: list[Any] = []

    async def starter(**env: str) -> Server:
        fake = FakeRunPod()
        upstream = TestServer(fake.app())
        await upstream.start_server()
        port = free_port()
        db = tmp_path / f"cb-{port}.db"
        full = {
            "DATABASE_URL": f"sqlite:///{db}",
            "RUNPOD_ENDPOINT_URL": str(upstream.make_url("")).rstrip("/"),
            "PUBLIC_URL": f"http://127.0.0.1:{port}",
            **env,
        }
        manager = _process(tmp_path, port, full)
        proc, log = manager.__enter__()
        stack.append((manager, upstream))
        base = f"http://127.0.0.1:{port}"
        await _up(base)
        return Server(base, proc, db, log, fake)

    yield starter
    for manager, upstream in reversed(stack):
        manager.__exit__(None, None, None)
        await upstream.close()


async def _logged(server: Server, text: str, within_s: float = 5.0) -> None:
    """Return once the server's log holds `text` (the process writes it a moment after answering)."""
    deadline = time.monotonic() + within_s
    while text not in server.log_text() and time.monotonic() < deadline:  # noqa: ASYNC110 (a file, no event)
        await asyncio.sleep(0.05)


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_without_api_keys_the_job_api_is_closed_and_the_rest_is_open(start):
    """API_KEYS unset: every /v1/* route answers 401 api_key_required and calls nothing upstream;
    the start-up log says how to set it; callbacks, health, metrics, the document and the page's
    shell answer without a key."""
    server = await start()
    async with aiohttp.ClientSession() as session:
        for method, path in (
            ("GET", "/v1/jobs"),
            ("POST", "/v1/jobs"),
            ("GET", "/v1/jobs/rp-1"),
            ("GET", "/v1/jobs/rp-1/events"),
            ("POST", "/v1/jobs/rp-1/cancel"),
            ("POST", "/v1/jobs/rp-1/retry"),
        ):
            body = {"input": {"prompt": "a cup"}} if method == "POST" else None
            async with session.request(method, server.base + path, json=body, headers=_auth(KEY)) as resp:
                assert resp.status == 401, path
                assert (await resp.json())["error"]["code"] == "api_key_required", path
        for path in ("/healthz", "/readyz", "/metrics", "/openapi.json", "/"):
            async with session.get(server.base + path) as resp:
                assert resp.status == 200, path
        async with session.post(
            f"{server.base}/callbacks/runpod", json={"id": "x-1", "status": "IN_QUEUE"}
        ) as r:
            assert r.status == 200
    assert server.fake.calls == []
    assert "API_KEYS is not set" in server.log_text()


async def test_keys_are_checked_and_bodies_must_be_json(start):
    """A wrong key is 401 api_key_invalid; a text/plain or form body with a good key is 415; neither
    reaches RunPod. The good key submits, and the log names its label, never the key."""
    server = await start(API_KEYS=f"alice:{KEY},bob:{OTHER_KEY}")
    body = json.dumps({"input": {"prompt": "a cup"}})
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{server.base}/v1/jobs", headers=_auth("not-a-key-at-all-000")) as resp:
            assert resp.status == 401
            assert (await resp.json())["error"]["code"] == "api_key_invalid"
        async with session.get(f"{server.base}/v1/jobs", headers={"Authorization": f"Basic {KEY}"}) as resp:
            assert resp.status == 401
        for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data"):
            headers = {**_auth(KEY), "Content-Type": content_type}
            async with session.post(f"{server.base}/v1/jobs", data=body, headers=headers) as resp:
                assert resp.status == 415, content_type
                assert (await resp.json())["error"]["code"] == "unsupported_media_type"
        assert server.fake.calls == []
        headers = {**_auth(OTHER_KEY), "Content-Type": "application/json"}
        async with session.post(f"{server.base}/v1/jobs", data=body, headers=headers) as resp:
            assert resp.status == 201
            job_id = (await resp.json())["id"]
        async with session.get(f"{server.base}/v1/jobs/{job_id}", headers=_auth(KEY)) as resp:
            assert resp.status == 200
    text = server.log_text()
    submitted = [json.loads(line) for line in text.splitlines() if "submitted" in line]
    assert submitted[0]["client"] == "bob"
    assert KEY not in text
    assert OTHER_KEY not in text


async def _submit(session: aiohttp.ClientSession, server: Server, prompt: str) -> str:
    async with session.post(
        f"{server.base}/v1/jobs", json={"input": {"prompt": prompt}}, headers=_auth(KEY)
    ) as r:
        assert r.status == 201, await r.text()
        return (await r.json())["id"]


async def _status(session: aiohttp.ClientSession, server: Server, job_id: str) -> str:
    async with session.get(f"{server.base}/v1/jobs/{job_id}", headers=_auth(KEY)) as resp:
        return (await resp.json())["status"]


def _signed(secret: str, msg_id: str, body: bytes, at: datetime | None = None) -> dict[str, str]:
    at = at or datetime.now(tz=UTC)
    return {
        "Content-Type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, at, body.decode()),
    }


async def test_callbacks_are_authenticated_per_job(start):
    """What goes to RunPod carries neither CALLBACK_TOKEN nor the master secret; job A's token and
    job A's signing secret move job A and never job B; rejected signatures are logged with why."""
    server = await start(API_KEYS=f"alice:{KEY}", CALLBACK_TOKEN=TOKEN, ORFEAS_WEBHOOK_SECRET=SECRET)
    async with aiohttp.ClientSession() as session:
        job_a = await _submit(session, server, "a cup")
        job_b = await _submit(session, server, "a vase")
        sent = json.dumps(server.fake.submitted)
        assert TOKEN not in sent
        assert SECRET.removeprefix("whsec_") not in sent
        body_a = server.fake.bodies[job_a]
        runpod_a = urlsplit(body_a["webhook"])
        worker_a = body_a["input"]["webhook"]
        token_a = parse_qs(runpod_a.query)["token"][0]
        secret_a = worker_a["secret"]
        assert secret_a != server.fake.bodies[job_b]["input"]["webhook"]["secret"]

        # RunPod-style: A's URL (its ref and token) with a body naming B changes nothing.
        forged = {"id": job_b, "status": "COMPLETED", "output": {"forged": True}}
        async with session.post(body_a["webhook"], json=forged) as resp:
            assert resp.status == 200
        assert await _status(session, server, job_b) == "IN_QUEUE"
        # A's token on B's own ref is no token for B either.
        ref_b = parse_qs(urlsplit(server.fake.bodies[job_b]["webhook"]).query)["ref"][0]
        url = f"{server.base}/callbacks/runpod?ref={ref_b}&token={token_a}"
        async with session.post(url, json=forged) as resp:
            assert resp.status == 200
        assert await _status(session, server, job_b) == "IN_QUEUE"
        # The same token for its own job is applied.
        async with session.post(body_a["webhook"], json={"id": job_a, "status": "IN_PROGRESS"}) as resp:
            assert resp.status == 200
        assert await _status(session, server, job_a) == "IN_PROGRESS"

        # Worker-style: events signed (by the reference library) with A's derived secret.
        event_b = json.dumps(
            make_event(EventType.FAILED, job_b, error={"code": "x", "message": "forged"})
        ).encode()
        async with session.post(
            worker_a["url"], data=event_b, headers=_signed(secret_a, "msg-b", event_b)
        ) as r:
            assert r.status == 200
        assert await _status(session, server, job_b) == "IN_QUEUE"
        event_a = json.dumps(make_event(EventType.COMPLETED, job_a, output={"meshes": {}})).encode()
        stale = _signed(secret_a, "msg-a-old", event_a, datetime.fromtimestamp(time.time() - 3600, tz=UTC))
        async with session.post(worker_a["url"], data=event_a, headers=stale) as r:
            assert r.status == 200
        bad = {**_signed(secret_a, "msg-a-bad", event_a), "webhook-signature": "v1,AAAA"}
        async with session.post(worker_a["url"], data=event_a, headers=bad) as r:
            assert r.status == 200
        async with session.post(worker_a["url"], data=event_a, headers={"webhook-id": "msg-a-bare"}) as r:
            assert r.status == 200
        assert await _status(session, server, job_a) == "IN_PROGRESS"
        async with session.post(
            worker_a["url"], data=event_a, headers=_signed(secret_a, "msg-a", event_a)
        ) as r:
            assert r.status == 200
        assert await _status(session, server, job_a) == "COMPLETED"

    outcomes = [(row["job_id"], row["outcome"]) for row in server.callbacks()]
    assert (job_b, "wrong_job") in outcomes
    assert outcomes.count((None, "rejected")) == 4  # A's token on B's ref; stale; bad; missing
    reasons = [
        json.loads(line).get("reason") for line in server.log_text().splitlines() if "rejected" in line
    ]
    assert {"bad token", "stale timestamp", "bad signature", "missing header"} <= set(reasons)
    assert token_a not in server.log_text()
    raw = server.db.read_bytes() + server.db.with_name(server.db.name + "-wal").read_bytes()
    assert token_a.encode() not in raw


async def test_a_private_webhook_is_refused_at_submit(start):
    """Without ORFEAS_ALLOW_PRIVATE_WEBHOOKS a client webhook on loopback or a private network is
    invalid_input naming `webhook` at submit, and nothing is sent to RunPod."""
    server = await start(API_KEYS=f"alice:{KEY}")
    async with aiohttp.ClientSession() as session:
        for field, body in (
            ("webhook", {"input": {"prompt": "x"}, "webhook": "http://127.0.0.1:9/hook"}),
            ("webhook", {"input": {"prompt": "x"}, "webhook": "https://10.1.2.3/hook"}),
            ("webhook", {"input": {"prompt": "x"}, "webhook": "http://[::1]:8080/hook"}),
            ("webhook", {"input": {"prompt": "x"}, "webhook": "http://localhost/hook"}),
            ("input.webhook", {"input": {"prompt": "x", "webhook": {"url": "http://169.254.169.254/"}}}),
        ):
            async with session.post(f"{server.base}/v1/jobs", json=body, headers=_auth(KEY)) as resp:
                assert resp.status == 400, body
                error = (await resp.json())["error"]
                assert (error["code"], error["field"]) == ("invalid_input", field), error
    assert server.fake.calls == []


async def test_no_token_reaches_the_log_from_a_malformed_request_line(start):
    """aiohttp's parser error quotes a malformed request line, query string and all: the log line
    has the token replaced."""
    server = await start(API_KEYS=f"alice:{KEY}", CALLBACK_TOKEN=TOKEN)
    host, port = "127.0.0.1", int(server.base.rsplit(":", 1)[1])
    for line in (
        f"POST /callbacks/runpod?token={TOKEN} HTTP/1.1 junk\r\nHost: x\r\n\r\n",
        f"GET /callbacks?x=1&token={TOKEN}\x00 HTTP/1.1\r\n\r\n",
    ):
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(line.encode("latin-1"))
        await writer.drain()
        answer = await reader.read(200)
        writer.close()
        await writer.wait_closed()
        assert answer.startswith(b"HTTP/1.")
    await _logged(server, "Bad status line")
    text = server.log_text()
    assert "Bad status line" in text
    assert "token=[redacted]" in text
    assert TOKEN not in text
