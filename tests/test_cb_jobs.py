"""The job API against a fake RunPod endpoint on loopback: refresh rules, long-poll, SSE, submit,
idempotency, cancel, the local dev server, client webhooks, deadlines."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestServer
from standardwebhooks.webhooks import Webhook

from callback_server import deliveries
from callback_server.app import LEADER_WORK
from callback_server.auth import job_secret, job_token, master_key
from callback_server.reconciler import reconcile_once
from orfeas_contract.events import EventType, make_event
from orfeas_worker.webhooks import new_attempt_id
from tests.cb_fakes import (
    API_KEY_LABEL,
    CbEnv,
    FakeRunPod,
    Harness,
    WebhookSink,
    base_settings,
    close_harness,
    start_harness,
)

pytestmark = pytest.mark.asyncio

SECRET = "whsec_" + "c2VjcmV0LWtleS1mb3ItdGVzdHMtMTIzNDU2Nzg5MA=="


class Clock:
    """Our server's clock, moved by hand; the store stamps rows with the real time."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest_asyncio.fixture
async def env(tmp_path: Path) -> AsyncIterator[CbEnv]:
    cb = CbEnv(tmp_path)
    yield cb
    await cb.close()


async def test_unknown_job_is_404(env):
    """GET of an id never seen answers 404 with an error code."""
    h = await env.harness()
    resp = await h.client.get("/v1/jobs/nope")
    assert resp.status == 404
    assert (await resp.json())["error"]["code"] == "not_found"


async def test_upstream_is_called_only_for_stale_non_terminal_jobs(env):
    """Fresh rows and terminal jobs never call upstream; a stale one does, once per refresh interval."""
    fake = FakeRunPod()
    url = await env.upstream(fake)
    clock = Clock()
    h = await env.harness(runpod_endpoint_url=url, refresh_s=10.0, clock=clock)
    await h.post("/callbacks/runpod", {"id": "rp-7", "status": "IN_QUEUE"})
    fake.statuses["rp-7"] = {"id": "rp-7", "status": "IN_PROGRESS", "output": {"stage": "shape"}}
    await h.job("rp-7")
    assert fake.calls_to("/status") == 0  # fresh row
    clock.now += 11
    job = await h.job("rp-7")
    assert fake.calls_to("/status") == 1
    assert job["status"] == "IN_PROGRESS"
    assert job["progress"] == {"stage": "shape"}
    await asyncio.gather(*(h.job("rp-7") for _ in range(5)))
    assert fake.calls_to("/status") == 1  # the row and the check are fresh again
    clock.now += 11
    fake.statuses["rp-7"] = {"id": "rp-7", "status": "COMPLETED", "output": {"glb": "s3://b/rp-7"}}
    assert (await h.job("rp-7"))["status"] == "COMPLETED"
    assert fake.calls_to("/status") == 2
    clock.now += 1000
    for _ in range(3):
        await h.job("rp-7")
    assert fake.calls_to("/status") == 2  # terminal: never again


async def test_slow_upstream_is_cut_by_the_timeout(env):
    """An upstream that does not answer in time leaves the stored state and answers promptly."""
    fake = FakeRunPod(status_delay_s=5.0)
    url = await env.upstream(fake)
    clock = Clock()
    h = await env.harness(runpod_endpoint_url=url, refresh_s=1.0, upstream_timeout_s=0.2, clock=clock)
    await h.post("/callbacks/runpod", {"id": "rp-s", "status": "IN_QUEUE"})
    clock.now += 5
    assert (await h.job("rp-s"))["status"] == "IN_QUEUE"
    text = await (await h.client.get("/metrics")).text()
    assert 'orfeas_upstream_calls_total{op="status",result="timeout"} 1' in text


async def test_long_poll_wakes_on_a_callback(env):
    """?wait=30 answers as soon as a callback changes the job, not after the wait."""
    h = await env.harness()
    await h.post("/callbacks/runpod", {"id": "lp-1", "status": "IN_QUEUE"})
    poll = asyncio.create_task(h.client.get("/v1/jobs/lp-1", params={"wait": "30"}))
    await asyncio.sleep(0.2)
    assert not poll.done()
    await h.post("/callbacks/runpod", {"id": "lp-1", "status": "COMPLETED", "output": 1})
    resp = await asyncio.wait_for(poll, 10)
    assert (await resp.json())["status"] == "COMPLETED"


async def test_wait_is_validated(env):
    """wait above 60 s or not a number is a 400."""
    h = await env.harness()
    await h.post("/callbacks/runpod", {"id": "w-1", "status": "IN_QUEUE"})
    assert (await h.client.get("/v1/jobs/w-1", params={"wait": "61"})).status == 400
    assert (await h.client.get("/v1/jobs/w-1", params={"wait": "soon"})).status == 400


async def test_sse_streams_changes_until_terminal(env):
    """/events sends the current state, each change, and ends after the terminal one."""
    h = await env.harness()
    await h.post("/callbacks/runpod", {"id": "sse-1", "status": "IN_QUEUE"})
    resp = await h.client.get("/v1/jobs/sse-1/events")
    assert resp.headers["Content-Type"].startswith("text/event-stream")

    async def feed() -> None:
        await asyncio.sleep(0.1)
        await h.post("/callbacks/runpod", {"id": "sse-1", "status": "IN_PROGRESS"})
        await asyncio.sleep(0.1)
        await h.post("/callbacks/runpod", {"id": "sse-1", "status": "COMPLETED", "output": {"ok": 1}})

    feeder = asyncio.create_task(feed())
    text = (await asyncio.wait_for(resp.read(), 10)).decode()
    await feeder
    states = [json.loads(line[6:])["status"] for line in text.splitlines() if line.startswith("data: ")]
    assert states == ["IN_QUEUE", "IN_PROGRESS", "COMPLETED"]


async def test_submit_sends_webhooks_and_stores_the_job(env):
    """POST /v1/jobs calls /run with our RunPod webhook and the worker's signed-callback address."""
    fake = FakeRunPod()
    url = await env.upstream(fake)
    h = await env.harness(
        runpod_endpoint_url=url,
        public_url="https://cb.example.com",
        callback_token="master-callback-token",
        webhook_secret=SECRET,
    )
    resp = await h.client.post("/v1/jobs", json={"input": {"image": "https://x/y.png"}})
    assert resp.status == 201
    created = await resp.json()
    assert created == {"id": "rp-1", "status": "IN_QUEUE"}
    sent = fake.submitted[0]
    stored = await h.runtime.store.get_job("rp-1")
    assert stored is not None
    assert stored.callback_ref
    ref = stored.callback_ref
    master = master_key(h.runtime.settings)
    assert master is not None
    assert (
        sent["webhook"] == f"https://cb.example.com/callbacks/runpod?ref={ref}&token={job_token(master, ref)}"
    )
    assert sent["input"]["webhook"] == {
        "url": f"https://cb.example.com/callbacks/orfeas?ref={ref}",
        "secret": job_secret(master, ref),
    }
    assert "master-callback-token" not in json.dumps(sent)  # neither master leaves the server
    assert SECRET.removeprefix("whsec_") not in json.dumps(sent)
    assert sent["input"]["image"] == "https://x/y.png"
    job = await h.job("rp-1")
    assert job["status"] == "IN_QUEUE"
    listed = await (await h.client.get("/v1/jobs", params={"limit": "5"})).json()
    assert [j["id"] for j in listed["jobs"]] == ["rp-1"]


async def test_submit_keeps_a_webhook_the_input_names(env):
    """An input that already names its worker webhook is sent unchanged."""
    fake = FakeRunPod()
    url = await env.upstream(fake)
    h = await env.harness(runpod_endpoint_url=url, public_url="https://cb.example.com")
    mine = {"url": "https://elsewhere.example.com/hook"}
    await h.client.post("/v1/jobs", json={"input": {"prompt": "a cat", "webhook": mine}})
    assert fake.submitted[0]["input"]["webhook"] == mine


async def test_idempotency_key_returns_the_same_job_or_409(env):
    """The same key and input while running → the same job; other input → 409 naming it."""
    fake = FakeRunPod()
    url = await env.upstream(fake)
    h = await env.harness(runpod_endpoint_url=url)
    body = {"input": {"prompt": "a vase"}, "idempotency_key": "k-1"}
    first = await h.client.post("/v1/jobs", json=body)
    again = await h.client.post("/v1/jobs", json=body)
    assert first.status == 201
    assert again.status == 200
    assert (await again.json())["id"] == (await first.json())["id"]
    other = await h.client.post("/v1/jobs", json={"input": {"prompt": "a cup"}, "idempotency_key": "k-1"})
    assert other.status == 409
    conflict = await other.json()
    assert (conflict["error"]["code"], conflict["id"]) == ("idempotency_conflict", "rp-1")
    assert fake.calls_to("/run") == 1


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b'{"input": 3}',
        b'{"input": {}, "extra": 1}',
        b'{"input": {}, "webhook": "ftp://x"}',
    ],
)
async def test_submit_validates_its_body(env, body):
    """A malformed submission is a 400 naming the problem, and nothing is sent upstream."""
    fake = FakeRunPod()
    url = await env.upstream(fake)
    h = await env.harness(runpod_endpoint_url=url)
    resp = await h.client.post("/v1/jobs", data=body, headers={"Content-Type": "application/json"})
    assert resp.status == 400
    assert (await resp.json())["error"]["code"] == "invalid_input"
    assert fake.calls == []


async def test_cancel(env):
    """Cancel calls upstream and marks the job CANCELLED; a terminal job answers 409."""
    fake = FakeRunPod()
    url = await env.upstream(fake)
    h = await env.harness(runpod_endpoint_url=url)
    job_id = (await (await h.client.post("/v1/jobs", json={"input": {}})).json())["id"]
    resp = await h.client.post(f"/v1/jobs/{job_id}/cancel")
    assert (await resp.json())["status"] == "CANCELLED"
    assert fake.calls_to("/cancel") == 1
    assert (await h.client.post(f"/v1/jobs/{job_id}/cancel")).status == 409
    assert (await h.client.post("/v1/jobs/unknown/cancel")).status == 404


async def test_local_dev_server_mode_runs_the_job_and_stores_its_result(env):
    """Against the local dev server the job runs on our POST /status; its result and webhook land."""
    fake = FakeRunPod(local=True)
    url = await env.upstream(fake)
    h = await env.harness(runpod_endpoint_url=url, runpod_local=True)
    callback_base = str(h.client.make_url("")).rstrip("/")
    h.runtime.settings.__dict__["public_url"] = callback_base  # the server's own address, known now
    resp = await h.client.post("/v1/jobs", json={"input": {"prompt": "a boat"}})
    job_id = (await resp.json())["id"]
    job = await (await h.client.get(f"/v1/jobs/{job_id}", params={"wait": "10"})).json()
    for _ in range(50):
        if job["status"] == "COMPLETED":
            break
        job = await (await h.client.get(f"/v1/jobs/{job_id}", params={"wait": "1"})).json()
    assert job["status"] == "COMPLETED"
    assert job["output"]["job_id"] == job_id
    assert [c for c in fake.calls if c[1].startswith("/status")] == [("POST", f"/status/{job_id}")]
    # the webhook ({"output": …}, no id at the root) was recorded against the same job
    for _ in range(50):
        if any(r["job_id"] == job_id for r in h.callbacks()):
            break
        await asyncio.sleep(0.05)
    assert any(r["job_id"] == job_id for r in h.callbacks())


async def test_client_webhook_is_signed_and_retried_until_delivered(env):
    """The leader delivers the client's webhook, Standard Webhooks signed, retrying a failure."""
    sink = WebhookSink(statuses=[500])
    sink_server = TestServer(sink.app())
    await sink_server.start_server()
    try:
        fake = FakeRunPod()
        url = await env.upstream(fake)
        h = await env.harness(runpod_endpoint_url=url, webhook_secret=SECRET, lease_s=1.0)
        hook = str(sink_server.make_url("/hook"))
        job_id = (await (await h.client.post("/v1/jobs", json={"input": {}, "webhook": hook})).json())["id"]
        body = json.dumps({"type": "completed", "job_id": job_id, "output": {"glb": "x"}})
        now = datetime.now(tz=UTC)
        headers = {
            "webhook-id": "msg-done",
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": Webhook(SECRET).sign("msg-done", now, body),
        }
        assert (await h.post("/callbacks/orfeas", body, headers=headers)).status == 200
        assert (await h.job(job_id))["status"] == "COMPLETED"
        for _ in range(200):
            if h.runtime.role == "leader":
                break
            await asyncio.sleep(0.05)
        assert h.runtime.role == "leader"
        await asyncio.wait_for(sink.arrived.wait(), 10)
        # The first attempt was answered 500: the message stays pending, due one backoff step later.
        store = h.runtime.store
        pending: list[Any] = []
        for _ in range(200):
            pending = await store.due_deliveries(9e12, 10)
            if pending and pending[0].attempts == 1:
                break
            await asyncio.sleep(0.05)
        assert [(d.attempts, d.terminal) for d in pending] == [(1, True)]
        assert pending[0].next_attempt_at >= time.time() + deliveries.FIRST_BACKOFF_S - 1
        assert await store.due_deliveries(time.time(), 10) == []
        assert len(sink.received) == 1
        fence = h.runtime.fence
        assert fence is not None
        await h.client.server.app[LEADER_WORK].stop()  # the retry below is the only sender
        h.runtime.clock = lambda: 9e12  # every retry is due
        await deliveries.deliver_due(h.runtime, fence)
        assert len(sink.received) == 2
        headers, body = sink.received[-1]
        payload = Webhook(SECRET).verify(body, {k.lower(): v for k, v in headers.items()})
        assert payload["data"]["id"] == job_id
        assert payload["data"]["status"] == "COMPLETED"
        assert sink.received[0][0]["webhook-id"] == headers["webhook-id"]  # same message id on retry
    finally:
        await sink_server.close()


async def _leader_fence(h) -> int:
    """The harness's leader fence, once its background election has won (within 10 s)."""
    for _ in range(200):
        if h.runtime.fence is not None:
            break
        await asyncio.sleep(0.05)
    fence = h.runtime.fence
    assert fence is not None
    return fence


async def test_reconciler_expires_jobs_past_their_deadline(env):
    """A job past its deadline becomes TIMED_OUT when the leader reconciles."""
    fake = FakeRunPod()
    url = await env.upstream(fake)
    clock = Clock()
    h = await env.harness(runpod_endpoint_url=url, job_deadline_s=60.0, clock=clock, reconcile_s=600.0)
    job_id = (await (await h.client.post("/v1/jobs", json={"input": {}})).json())["id"]
    fence = await _leader_fence(h)
    clock.now += 3600  # also past RunPod's 30-minute window: no status polling
    await reconcile_once(h.runtime, fence)
    job = await h.job(job_id)
    assert job["status"] == "TIMED_OUT"
    assert fake.calls_to("/status") == 0


async def test_retry_is_the_one_way_back(env):
    """A failed job goes back to IN_QUEUE only through retry, as its next attempt; late events of
    the first attempt are then stale, and a running job cannot be retried."""
    fake = FakeRunPod()
    url = await env.upstream(fake)
    h = await env.harness(runpod_endpoint_url=url)
    job_id = (await (await h.client.post("/v1/jobs", json={"input": {}})).json())["id"]
    assert (await h.client.post(f"/v1/jobs/{job_id}/retry")).status == 409
    await h.post("/callbacks/runpod", {"id": job_id, "status": "FAILED", "error": "oom"})
    await h.post("/callbacks/runpod", {"id": job_id, "status": "IN_QUEUE"})
    assert (await h.job(job_id))["status"] == "FAILED"  # no way back by callback
    resp = await h.client.post(f"/v1/jobs/{job_id}/retry")
    assert resp.status == 200
    retried = await resp.json()
    assert retried["status"] == "IN_QUEUE"
    assert retried["error"] is None
    assert fake.calls_to("/retry") == 1
    await h.post("/callbacks/runpod", {"id": job_id, "status": "COMPLETED", "output": {"ok": True}})
    assert (await h.job(job_id))["status"] == "COMPLETED"


async def test_a_late_event_of_the_first_run_is_stale_after_a_retry(env):
    """After /retry, the first run's re-sent `failed` event (the worker's shape, naming its run in
    `attempt`) is stored with the outcome `stale` and leaves the job IN_QUEUE; the new run's apply."""
    fake = FakeRunPod()
    url = await env.upstream(fake)
    h = await env.harness(runpod_endpoint_url=url)
    job_id = (await (await h.client.post("/v1/jobs", json={"input": {}})).json())["id"]
    first = new_attempt_id()
    failed = make_event(
        EventType.FAILED, job_id, error={"code": "internal_error", "message": "boom"}, attempt=first
    )
    await h.post("/callbacks/runpod", failed)
    assert (await h.job(job_id))["status"] == "FAILED"
    assert (await h.client.post(f"/v1/jobs/{job_id}/retry")).status == 200
    await h.post("/callbacks/runpod", failed)  # the first run's terminal webhook, sent again late
    assert (await h.job(job_id))["status"] == "IN_QUEUE"
    await asyncio.sleep(0.002)  # a later millisecond: the retry's run sorts after the first
    second = new_attempt_id()
    await h.post("/callbacks/runpod", make_event(EventType.PROGRESS, job_id, attempt=second))
    assert (await h.job(job_id))["status"] == "IN_PROGRESS"
    outcomes = [r["outcome"] for r in await h.callback_rows() if r["job_id"] == job_id]
    assert outcomes == ["applied", "stale", "applied"]


async def test_replicas_refresh_a_stale_job_upstream_once(env, tmp_path: Path):
    """Two replicas on one store, asked at once about one stale job, call upstream once between them."""
    fake = FakeRunPod(status_delay_s=0.2)
    url = await env.upstream(fake)
    clock = Clock()
    db = tmp_path / "shared.db"
    replicas = [
        await env.harness(runpod_endpoint_url=url, refresh_s=10.0, reconcile_s=600.0, clock=clock, db_path=db)
        for _ in range(2)
    ]
    a, b = replicas
    await a.post("/callbacks/runpod", {"id": "rp-r", "status": "IN_QUEUE"})
    fake.statuses["rp-r"] = {"id": "rp-r", "status": "IN_PROGRESS", "output": {"stage": "shape"}}
    clock.now += 11
    answers = await asyncio.gather(*(h.job("rp-r") for h in (a, b, a, b, b, a)))
    assert {job["id"] for job in answers} == {"rp-r"}
    for _ in range(100):
        if (await b.job("rp-r"))["status"] == "IN_PROGRESS":
            break
        await asyncio.sleep(0.05)
    assert (await b.job("rp-r"))["status"] == "IN_PROGRESS"
    assert fake.calls_to("/status") == 1


async def test_callback_that_beats_the_submission_keeps_it(env):
    """A RunPod webhook that lands before POST /v1/jobs has stored its job loses nothing: the job
    keeps the webhook's state, gains the submission's input, key and deadline, and the client's
    own webhook is told."""
    sink = WebhookSink()
    sink_server = TestServer(sink.app())
    await sink_server.start_server()
    try:
        harness: list[Harness] = []

        async def finish_first(job_id: str, _body: dict[str, Any]) -> None:
            done = {"id": job_id, "status": "COMPLETED", "output": {"glb": "s3://b/early"}}
            assert (await harness[0].post("/callbacks/runpod", done)).status == 200

        fake = FakeRunPod(before_answer=finish_first)
        url = await env.upstream(fake)
        h = await env.harness(runpod_endpoint_url=url, lease_s=1.0)
        harness.append(h)
        hook = str(sink_server.make_url("/hook"))
        body = {"input": {"prompt": "a cup"}, "idempotency_key": "k-early", "webhook": hook}
        resp = await h.client.post("/v1/jobs", json=body)
        assert resp.status == 201
        answer = await resp.json()
        assert answer["status"] == "COMPLETED"
        stored = await h.runtime.store.get_job(answer["id"])
        assert stored is not None
        assert (stored.input, stored.idempotency_key, stored.client_webhook) == (
            {"prompt": "a cup"},
            f"{API_KEY_LABEL}:k-early",  # scoped to the API key's label
            hook,
        )
        assert stored.deadline_at is not None
        await asyncio.wait_for(sink.arrived.wait(), 10)
        delivered = json.loads(sink.received[0][1])
        assert (delivered["type"], delivered["data"]["id"]) == ("job.completed", answer["id"])
    finally:
        await sink_server.close()


async def test_a_retried_job_has_a_new_deadline_and_can_be_cancelled_again(env):
    """Retry gives the new attempt its own deadline (the reconciler leaves it alone until then), and
    a job cancelled, retried and cancelled again ends CANCELLED again."""
    fake = FakeRunPod()
    url = await env.upstream(fake)
    clock = Clock()
    h = await env.harness(runpod_endpoint_url=url, job_deadline_s=60.0, reconcile_s=600.0, clock=clock)
    job_id = (await (await h.client.post("/v1/jobs", json={"input": {}})).json())["id"]
    assert (await (await h.client.post(f"/v1/jobs/{job_id}/cancel")).json())["status"] == "CANCELLED"
    clock.now += 100  # past the first attempt's deadline
    assert (await (await h.client.post(f"/v1/jobs/{job_id}/retry")).json())["status"] == "IN_QUEUE"
    stored = await h.runtime.store.get_job(job_id)
    assert stored is not None
    assert stored.deadline_at == pytest.approx(clock.now + 60.0)
    fence = await _leader_fence(h)
    await reconcile_once(h.runtime, fence)
    assert (await h.job(job_id))["status"] == "IN_QUEUE"
    again = await h.client.post(f"/v1/jobs/{job_id}/cancel")
    assert (again.status, (await again.json())["status"]) == (200, "CANCELLED")
    assert fake.calls_to("/cancel") == 2


async def test_shutdown_ends_long_polls_and_event_streams_at_once(tmp_path: Path):
    """Stopping the server answers a pending long-poll with the stored job and ends an open event
    stream, instead of holding shutdown for their wait."""
    h = await start_harness(tmp_path, base_settings())
    await h.post("/callbacks/runpod", {"id": "bye", "status": "IN_PROGRESS"})
    poll = asyncio.create_task(h.client.get("/v1/jobs/bye", params={"wait": "60"}))
    stream = await h.client.get("/v1/jobs/bye/events")
    reading = asyncio.create_task(stream.read())
    await asyncio.sleep(0.3)
    assert not poll.done()
    assert not reading.done()
    started = time.monotonic()
    closing = asyncio.create_task(h.client.server.close())  # the server only: our requests stay open
    answer = await asyncio.wait_for(poll, 5)
    assert (answer.status, (await answer.json())["status"]) == (200, "IN_PROGRESS")
    text = (await asyncio.wait_for(reading, 5)).decode()
    assert [json.loads(line[6:])["status"] for line in text.splitlines() if line.startswith("data: ")] == [
        "IN_PROGRESS"
    ]
    await asyncio.wait_for(closing, 20)
    assert time.monotonic() - started < 5
    await close_harness(h)
