"""POST /callbacks: 200 for every body once stored; authenticity; forward-only; dedupe."""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer
from standardwebhooks.webhooks import Webhook

from callback_server.app import create_app, start_background
from callback_server.runtime import RUNTIME
from callback_server.store import open_store
from tests.cb_fakes import AUTH, Harness, base_settings, close_harness, start_harness
from tests.store_support import record

pytestmark = pytest.mark.asyncio

SECRET = "whsec_" + "c2VjcmV0LWtleS1mb3ItdGVzdHMtMTIzNDU2Nzg5MA=="


@pytest_asyncio.fixture
async def open_harness(tmp_path: Path) -> AsyncIterator:
    made: list[Harness] = []

    async def make(**overrides) -> Harness:
        harness = await start_harness(tmp_path, base_settings(**overrides))
        made.append(harness)
        return harness

    yield make
    for harness in made:
        await close_harness(harness)


BODIES = [
    ("json", b'{"id": "j-json", "status": "IN_PROGRESS"}', "application/json"),
    ("bad json", b'{"id": "j-bad", "status": ', "application/json"),
    ("binary", bytes(range(256)) * 4, "application/octet-stream"),
    ("form", b"taskId=j-form&state=success", "application/x-www-form-urlencoded"),
    ("empty", b"", "application/json"),
    ("deep", b'{"a":' * 5000 + b"1" + b"}" * 5000, "application/json"),
    ("utf-16", '{"id": "x"}'.encode("utf-16"), "application/json"),
    ("array", b'[{"job_id": "j-arr", "status": "COMPLETED"}]', "application/json"),
]


@pytest.mark.parametrize(("kind", "body", "content_type"), BODIES, ids=[b[0] for b in BODIES])
async def test_every_body_is_answered_200_and_recorded(open_harness, kind, body, content_type):
    """Whatever the body, the answer is 200 and the raw bytes are on disk."""
    h = await open_harness()
    resp = await h.post("/callbacks/runpod", body, headers={"Content-Type": content_type})
    assert resp.status == 200
    rows = h.callbacks()
    assert len(rows) == 1
    assert bytes(rows[0]["body"]) == body
    assert rows[0]["outcome"] is not None


async def test_oversize_body_is_answered_200_and_stored_truncated(open_harness):
    """A body over the cap (and over aiohttp's 1 MiB limit) gets 200, not 413, and is kept capped."""
    h = await open_harness(max_body_bytes=64 * 1024)
    body = b'{"id": "big", "pad": "' + b"x" * (3 * 1024 * 1024) + b'"}'
    resp = await h.client.post("/callbacks/runpod", data=io.BytesIO(body))
    assert resp.status == 200
    row = h.callbacks()[0]
    assert len(row["body"]) == 64 * 1024
    assert row["outcome"] == "oversize"


async def test_runpod_envelope_creates_and_moves_the_job(open_harness):
    """An unknown id creates the job; later events move it forward; late ones are recorded only."""
    h = await open_harness()
    await h.post("/callbacks/runpod", {"id": "rp-1", "status": "IN_PROGRESS"})
    assert (await h.job("rp-1"))["status"] == "IN_PROGRESS"
    await h.post("/callbacks/runpod", {"id": "rp-1", "status": "COMPLETED", "output": {"glb": "s3://x"}})
    done = await h.job("rp-1")
    assert done["status"] == "COMPLETED"
    assert done["output"] == {"glb": "s3://x"}
    resp = await h.post("/callbacks/runpod", {"id": "rp-1", "status": "IN_QUEUE"})
    assert resp.status == 200
    resp = await h.post("/callbacks/runpod", {"id": "rp-1", "status": "FAILED", "error": "late"})
    assert resp.status == 200
    late = await h.job("rp-1")
    assert late["last_callback"]["status"] == "FAILED"  # shown, not applied
    assert {**late, "last_callback": None} == {**done, "last_callback": None}
    assert [r["outcome"] for r in h.callbacks()] == ["created", "applied", "stale", "stale"]


async def test_duplicates_are_recorded_not_applied(open_harness):
    """The same webhook-id, or the same body without one, is a duplicate."""
    h = await open_harness()
    event = {"type": "progress", "job_id": "d1", "progress": {"stage": "shape", "fraction": 0.2}}
    await h.post("/callbacks/orfeas", event, headers={"webhook-id": "msg-1"})
    event2 = {"type": "progress", "job_id": "d1", "progress": {"stage": "shape", "fraction": 0.4}}
    await h.post("/callbacks/orfeas", event2, headers={"webhook-id": "msg-2"})
    await h.post("/callbacks/orfeas", event, headers={"webhook-id": "msg-1"})
    assert (await h.job("d1"))["progress"]["fraction"] == 0.4
    body = {"id": "d2", "status": "IN_PROGRESS", "output": "half"}
    await h.post("/callbacks/runpod", body)
    await h.post("/callbacks/runpod", body)
    outcomes = [r["outcome"] for r in h.callbacks()]
    assert outcomes == ["created", "applied", "duplicate", "created", "duplicate"]


async def test_token_gates_callbacks(open_harness):
    """With CALLBACK_TOKEN set, a callback without it is stored as rejected and changes nothing."""
    h = await open_harness(callback_token="s3cret")
    await h.post("/callbacks/runpod", {"id": "t1", "status": "IN_PROGRESS"}, params={"token": "s3cret"})
    forged = await h.post("/callbacks/runpod", {"id": "t1", "status": "COMPLETED"}, params={"token": "nope"})
    assert forged.status == 200
    wrong_header = await h.post(
        "/callbacks/runpod", {"id": "t1", "status": "FAILED"}, headers={"X-Callback-Token": "s3cre"}
    )
    assert wrong_header.status == 200
    assert (await h.job("t1"))["status"] == "IN_PROGRESS"
    await h.post(
        "/callbacks/runpod", {"id": "t1", "status": "COMPLETED"}, headers={"X-Callback-Token": "s3cret"}
    )
    assert (await h.job("t1"))["status"] == "COMPLETED"
    rows = h.callbacks()
    assert [(r["accepted"], r["outcome"]) for r in rows] == [
        (1, "created"),
        (0, "rejected"),
        (0, "rejected"),
        (1, "applied"),
    ]
    resp = await h.client.get("/metrics")
    assert "orfeas_callbacks_rejected_total 2" in await resp.text()


async def test_standard_webhooks_signature_is_verified_on_raw_bytes(open_harness):
    """A body signed by the standardwebhooks library is applied; a tampered copy is rejected."""
    h = await open_harness(webhook_secret=SECRET)
    body = json.dumps({"type": "completed", "job_id": "s1", "status": "COMPLETED", "output": {"a": 1}})
    now = time.time()
    signature = Webhook(SECRET).sign("msg-s1", datetime.fromtimestamp(now, tz=UTC), body)
    headers = {"webhook-id": "msg-s1", "webhook-timestamp": str(int(now)), "webhook-signature": signature}
    tampered = body.replace('"a": 1', '"a": 2')
    bad = await h.post("/callbacks/orfeas", tampered, headers=headers)
    assert bad.status == 200
    assert (await h.client.get("/v1/jobs/s1")).status == 404
    good = await h.post("/callbacks/orfeas", body, headers=headers)
    assert good.status == 200
    assert (await h.job("s1"))["output"] == {"a": 1}
    assert [r["outcome"] for r in h.callbacks()] == ["rejected", "created"]


async def test_local_server_webhook_finds_the_id_inside_the_output(open_harness):
    """RunPod's local server posts {"output": …} with no id: the job id inside output is used."""
    h = await open_harness()
    resp = await h.post("/callbacks/runpod", {"output": {"job_id": "test-abc", "files": {"glb": "x"}}})
    assert (await resp.json())["job_id"] == "test-abc"
    assert (await h.job("test-abc"))["status"] == "COMPLETED"


async def test_unparseable_callbacks_count_as_parse_misses(open_harness):
    """A body naming no task id is stored with outcome no_task_id and counted."""
    h = await open_harness()
    await h.post("/callbacks/kie", {"hello": "world"})
    assert h.callbacks()[0]["outcome"] == "no_task_id"
    text = await (await h.client.get("/metrics")).text()
    assert "orfeas_callback_parse_misses_total 1" in text
    assert 'orfeas_callbacks_total{outcome="no_task_id",provider="kie"} 1' in text


async def test_unapplied_callbacks_are_replayed_at_start(tmp_path: Path):
    """A callback recorded but never marked (a crash before apply) is applied when the server starts."""
    db = tmp_path / "replay.db"
    store = open_store(f"sqlite:///{db}")
    async with store:
        await record(
            store, "runpod", {}, b'{"id": "r-9", "status": "COMPLETED", "output": 1}', "", accepted=True
        )

    found = await _jobs_after_start(db, base_settings(), "r-9")
    assert found["r-9"] is not None
    assert found["r-9"]["status"] == "COMPLETED"


async def _jobs_after_start(db: Path, settings, awaited: str, others: tuple[str, ...] = ()) -> dict:
    """Start a server on `db`, wait (up to 5 s) for the replay at start to show job `awaited`,
    then read `others` once: {job id: the job as GET /v1/jobs shows it, or None if unknown}.
    Replay goes in row order, so rows stored before the awaited one have been replayed by then."""
    app = create_app(settings, open_store(f"sqlite:///{db}"))
    client = TestClient(TestServer(app), headers=AUTH)
    await client.start_server()
    found: dict[str, dict | None] = dict.fromkeys((awaited, *others))
    try:
        start_background(app)
        await asyncio.wait_for(app[RUNTIME].store_ready.wait(), 10)
        for _ in range(100):
            resp = await client.get(f"/v1/jobs/{awaited}")
            if resp.status == 200:
                found[awaited] = await resp.json()
                break
            await asyncio.sleep(0.05)
        for job_id in others:
            resp = await client.get(f"/v1/jobs/{job_id}")
            found[job_id] = await resp.json() if resp.status == 200 else None
    finally:
        await client.close()
    return found


async def test_the_callback_token_is_never_stored(open_harness):
    """The token (query or header) is replaced before the callback is written; the rest is kept."""
    h = await open_harness(callback_token="s3cret-value")
    await h.post(
        "/callbacks/runpod",
        {"id": "tk-1", "status": "IN_PROGRESS"},
        params={"token": "s3cret-value", "taskId": "tk-1"},
    )
    await h.post(
        "/callbacks/runpod",
        {"id": "tk-1", "status": "COMPLETED"},
        headers={"X-Callback-Token": "s3cret-value"},
    )
    assert (await h.job("tk-1"))["status"] == "COMPLETED"
    rows = h.callbacks()
    assert [r["accepted"] for r in rows] == [1, 1]
    assert "s3cret-value" not in rows[0]["query"]
    assert "taskId=tk-1" in rows[0]["query"]
    assert json.loads(rows[1]["headers"])["X-Callback-Token"] == "[redacted]"
    raw = h.db_path.read_bytes() + h.db_path.with_name(h.db_path.name + "-wal").read_bytes()
    assert b"s3cret-value" not in raw


async def test_replay_keeps_the_verdict_given_on_arrival(tmp_path: Path):
    """Stored callbacks are replayed by their stored verdict: the accepted one applies although its
    token is redacted, the rejected one changes nothing."""
    db = tmp_path / "verdict.db"
    store = open_store(f"sqlite:///{db}")
    async with store:
        await record(
            store, "runpod", {}, b'{"id": "v-2", "status": "COMPLETED"}', "token=guess", accepted=False
        )
        await record(
            store,
            "runpod",
            {},
            b'{"id": "v-1", "status": "COMPLETED"}',
            "token=%5Bredacted%5D",
            accepted=True,
        )

    found = await _jobs_after_start(db, base_settings(callback_token="s3cret"), "v-1", ("v-2",))
    assert found["v-1"] is not None
    assert found["v-1"]["status"] == "COMPLETED"
    assert found["v-2"] is None


class SlowOpeningStore:
    """A real SQLite store whose open() waits until the test lets it go."""

    def __init__(self, inner, gate: asyncio.Event) -> None:
        self._inner, self._gate = inner, gate

    async def open(self) -> None:
        await self._gate.wait()
        await self._inner.open()

    def __getattr__(self, name: str):
        return getattr(self._inner, name)


async def test_port_answers_before_the_store_opens_and_callbacks_wait_for_it(tmp_path: Path):
    """While the store opens: /healthz answers, /readyz says so, a callback waits for the durable
    write (200 once open) and gets 503 (never a 200) when the store is not open in time."""
    gate = asyncio.Event()
    store = SlowOpeningStore(open_store(f"sqlite:///{tmp_path / 'slow.db'}"), gate)
    app = create_app(base_settings(store_wait_s=0.3), store)  # type: ignore[arg-type]
    client = TestClient(TestServer(app), headers=AUTH)
    await client.start_server()
    try:
        start_background(app)
        assert (await client.get("/healthz")).status == 200
        ready = await client.get("/readyz")
        assert (ready.status, await ready.json()) == (503, {"role": "passive", "store": "opening"})
        late = await client.post("/callbacks/runpod", json={"id": "w-0", "status": "IN_QUEUE"})
        assert late.status == 503
        waiting = asyncio.ensure_future(
            client.post("/callbacks/runpod", json={"id": "w-1", "status": "IN_QUEUE"})
        )
        await asyncio.sleep(0.05)
        gate.set()
        assert (await waiting).status == 200
        assert (await (await client.get("/v1/jobs/w-1")).json())["status"] == "IN_QUEUE"
        assert (await client.get("/v1/jobs/w-0")).status == 404
    finally:
        await client.close()
