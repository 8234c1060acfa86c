"""Nothing lost: every callback is stored (any encoding, bytes or query, on both stores) and every
callback that names a task leaves that task visible."""

from __future__ import annotations

import asyncio
import gzip
import json
import time
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import brotli
import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestServer

from callback_server import deliveries
from callback_server.decoding import _zstd_module
from callback_server.store.base import Job, StatusEvent
from orfeas_contract.status import JobStatus
from tests.cb_fakes import FakeRunPod, Harness, WebhookSink, base_settings, close_harness, start_harness
from tests.store_support import BACKENDS, PG_URL, reset_postgres

pytestmark = pytest.mark.asyncio

BODY = b'{"id": "enc-1", "status": "IN_PROGRESS"}'


def _raw_deflate(data: bytes) -> bytes:
    packer = zlib.compressobj(wbits=-15)
    return packer.compress(data) + packer.flush()


@pytest_asyncio.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Any]:
    made: list[Harness] = []
    servers: list[TestServer] = []

    async def make(backend: str = "sqlite", **overrides: Any) -> Harness:
        url = None
        if backend == "postgres":
            assert PG_URL is not None
            await reset_postgres(PG_URL)
            url = PG_URL
        h = await start_harness(tmp_path, base_settings(**overrides), database_url=url)
        made.append(h)
        return h

    async def upstream(fake: FakeRunPod) -> str:
        server = TestServer(fake.app())
        await server.start_server()
        servers.append(server)
        return str(server.make_url("")).rstrip("/")

    make.upstream = upstream  # type: ignore[attr-defined]
    yield make
    for h in made:
        await close_harness(h)
    for server in servers:
        await server.close()


ENCODED = [
    ("gzip", gzip.compress(BODY), "gzip", True),
    ("x-gzip", gzip.compress(BODY), "x-gzip", True),
    ("deflate", zlib.compress(BODY), "deflate", True),
    ("raw deflate", _raw_deflate(BODY), "deflate", True),
    ("br", brotli.compress(BODY), "br", True),
    ("zstd", _zstd_module().compress(BODY), "zstd", True),
    ("gzip then br", brotli.compress(gzip.compress(BODY)), "gzip, br", True),
    ("invalid gzip", b"this is not gzip at all", "gzip", False),
    ("invalid zstd", b"\x28\xb5\x2f\xfdjunk", "zstd", False),
    ("truncated br", brotli.compress(BODY)[:-3], "br", False),
    ("unknown coding", b"\x1f\x9d\x90compressed", "compress", False),
]


@pytest.mark.parametrize(("kind", "data", "encoding", "decodable"), ENCODED, ids=[e[0] for e in ENCODED])
async def test_every_content_encoding_is_answered_200_and_stored(harness, kind, data, encoding, decodable):
    """Whatever the Content-Encoding, the answer is 200, the bytes as sent are stored with a note,
    and a body that decodes moves its job."""
    h = await harness()
    headers = {"Content-Encoding": encoding, "Content-Type": "application/json"}
    resp = await h.client.post("/callbacks/runpod", data=data, headers=headers)
    assert resp.status == 200, await resp.text()
    [row] = await h.callback_rows()
    assert bytes(row["body"]) == data
    assert row["body_size"] == len(data)
    assert row["note"]
    assert "content-encoding" in row["note"]
    if decodable:
        assert row["outcome"] == "created"
        assert (await h.job("enc-1"))["status"] == "IN_PROGRESS"
    else:
        assert row["outcome"] == "no_task_id"
        assert "stored as received" in row["note"]


async def test_a_compression_bomb_is_cut_at_the_cap_and_stored(harness):
    """A gzip body inflating far past the cap is stored as sent and marked over-size, not inflated whole."""
    h = await harness(max_body_bytes=64 * 1024)
    bomb = gzip.compress(b'{"id": "bomb", "pad": "' + b"0" * (32 * 1024 * 1024) + b'"}')
    resp = await h.client.post("/callbacks/runpod", data=bomb, headers={"Content-Encoding": "gzip"})
    assert resp.status == 200
    [row] = await h.callback_rows()
    assert bytes(row["body"]) == bomb
    assert row["outcome"] == "oversize"
    assert "inflates past 65536 bytes" in row["note"]


async def test_gzip_bombs_are_inflated_off_the_event_loop(harness):
    """Four bodies inflating to 48 MB each leave the event loop free: a ticker never waits long."""
    h = await harness(max_body_bytes=64 * 1024 * 1024)
    bomb = gzip.compress(b"[" + b" " * (48 * 1024 * 1024) + b"]", compresslevel=1)
    gaps: list[float] = []
    running = True

    async def tick() -> None:
        last = time.perf_counter()
        while running:
            await asyncio.sleep(0.01)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    ticker = asyncio.ensure_future(tick())
    try:
        answers = await asyncio.gather(
            *(
                h.client.post(
                    "/callbacks/generic",
                    data=bomb,
                    headers={"Content-Encoding": "gzip", "X-Task-Id": f"b{n}"},
                )
                for n in range(4)
            )
        )
    finally:
        running = False
        await ticker
    assert [a.status for a in answers] == [200] * 4
    # Inflated on the loop, the four stalled it for seconds; on threads a tick waits a few tens of ms.
    assert max(gaps) < 1.0, max(gaps)
    assert len(await h.callback_rows()) == 4


@pytest.mark.parametrize("backend", BACKENDS)
async def test_nul_and_non_utf8_in_the_query_are_stored_on_both_stores(harness, backend):
    """A `%00` or a non-UTF-8 byte in the query string is answered 200, stored (escaped, and the row
    says so, or as sent) and its task id still read."""
    h = await harness(backend)
    for query in ("task_id=q-nul&x=%00", "task_id=q-ff&x=%FF%FE"):
        resp = await h.client.post(f"/callbacks/generic?{query}", data=b'{"state": "success"}')
        assert resp.status == 200, await resp.text()
    rows = await h.callback_rows()
    assert [r["query"] for r in rows] == ["task_id=q-nul&x=%00", "task_id=q-ff&x=%FF%FE"]
    assert (await h.job("q-nul"))["status"] == "COMPLETED"
    assert (await h.job("q-ff"))["status"] == "COMPLETED"


@pytest.mark.parametrize("backend", BACKENDS)
async def test_any_body_bytes_are_stored_on_both_stores(harness, backend):
    """NUL bytes, invalid UTF-8 and a JSON `\\u0000` in the body are stored byte for byte."""
    h = await harness(backend)
    bodies = [bytes(range(256)), b'{"id": "nul-1", "status": "FAILED", "error": "a\\u0000b"}']
    for body in bodies:
        assert (await h.client.post("/callbacks/runpod", data=body)).status == 200
    assert [bytes(r["body"]) for r in await h.callback_rows()] == bodies
    assert (await h.job("nul-1"))["error"] == {"code": "provider_error", "message": "a\x00b"}


@pytest.mark.parametrize("field", ["webhook", "idempotency_key"])
async def test_a_submission_holding_a_nul_is_refused_before_going_upstream(harness, field):
    """A NUL in `webhook` or `idempotency_key` is invalid_input, and RunPod is never called."""
    fake = FakeRunPod()
    h = await harness(runpod_endpoint_url=await harness.upstream(fake))
    value = "http://127.0.0.1/hook\x00" if field == "webhook" else "key\x00"
    resp = await h.post("/v1/jobs", {"input": {"prompt": "x"}, field: value})
    assert resp.status == 400
    error = (await resp.json())["error"]
    assert (error["code"], error["field"]) == ("invalid_input", field)
    assert fake.calls_to("/run") == 0


VISIBLE = [
    # (name, provider, path suffix, body, headers, task id, status, provider's word)
    ("array root", "generic", "", [{"job_id": "v-arr"}], {}, "v-arr", "IN_PROGRESS", None),
    (
        "array root with state",
        "generic",
        "",
        [{"job_id": "v-arr2", "state": "fail"}],
        {},
        "v-arr2",
        "FAILED",
        "fail",
    ),
    (
        "json string root",
        "generic",
        "",
        json.dumps(json.dumps({"taskId": "v-str", "status": "succeeded"})),
        {},
        "v-str",
        "COMPLETED",
        "succeeded",
    ),
    (
        "id in a string field holding json",
        "generic",
        "",
        {"payload": json.dumps({"record_id": "v-emb", "state": "generating"})},
        {},
        "v-emb",
        "IN_PROGRESS",
        "generating",
    ),
    (
        "id from the query",
        "generic",
        "?taskId=v-q",
        {"status": "COMPLETED"},
        {},
        "v-q",
        "COMPLETED",
        "COMPLETED",
    ),
    ("id from the query, no state", "generic", "?taskId=v-q2", b"\x00\x01", {}, "v-q2", "IN_PROGRESS", None),
    (
        "id from the header",
        "generic",
        "",
        {"state": "weird"},
        {"X-Task-Id": "v-h"},
        "v-h",
        "IN_PROGRESS",
        "weird",
    ),
    (
        "kie code 200",
        "kie",
        "",
        {
            "code": 200,
            "msg": "success",
            "data": {"taskId": "v-k1", "info": {"resultUrls": ["https://x/a.glb"]}},
        },
        {},
        "v-k1",
        "COMPLETED",
        "code 200",
    ),
    (
        "kie code 501",
        "kie",
        "",
        {"code": 501, "msg": "generation failed", "data": {"taskId": "v-k2"}},
        {},
        "v-k2",
        "FAILED",
        "code 501",
    ),
    (
        "kie callbackType first",
        "kie",
        "",
        {"code": 200, "msg": "first done", "data": {"callbackType": "first", "task_id": "v-k3"}},
        {},
        "v-k3",
        "IN_PROGRESS",
        "first",
    ),
    (
        "kie callbackType complete",
        "kie",
        "",
        {"code": 200, "msg": "ok", "data": {"callbackType": "complete", "task_id": "v-k4", "data": []}},
        {},
        "v-k4",
        "COMPLETED",
        "complete",
    ),
    (
        "kie callbackType error",
        "kie",
        "",
        {"code": 400, "msg": "bad prompt", "data": {"callbackType": "error", "task_id": "v-k5"}},
        {},
        "v-k5",
        "FAILED",
        "error",
    ),
]


@pytest.mark.parametrize(
    ("name", "provider", "suffix", "body", "headers", "task_id", "status", "word"),
    VISIBLE,
    ids=[v[0] for v in VISIBLE],
)
async def test_a_callback_naming_a_task_leaves_it_visible(
    harness, name, provider, suffix, body, headers, task_id, status, word
):
    """Whatever the shape, the task a callback names is found under its id, in the state the
    payload gives (IN_PROGRESS, "reported, state unknown", when none), with the callback shown."""
    h = await harness()
    resp = await h.post(f"/callbacks/{provider}{suffix}", body, headers=headers)
    assert resp.status == 200
    job = await h.job(task_id)
    assert job["status"] == status
    if word is None or (status == "IN_PROGRESS" and word == "weird"):
        assert job["progress"] == {"message": "reported, state unknown"}
    assert job["last_callback"]["provider"] == provider
    assert job["last_callback"]["status"] == word
    assert abs(job["last_callback"]["at"] - time.time()) < 60
    if status == "FAILED" and provider == "kie":
        assert job["error"]["message"] in ("generation failed", "bad prompt")


async def test_a_stateless_callback_for_a_known_job_only_shows_as_its_last_callback(harness):
    """A later callback with no readable state leaves the job's state and shows its own word."""
    h = await harness()
    await h.post(
        "/callbacks/runpod", {"id": "known-1", "status": "IN_PROGRESS", "output": {"stage": "shape"}}
    )
    before = await h.job("known-1")
    await h.post("/callbacks/generic?task_id=known-1", {"state": "mystery"})
    after = await h.job("known-1")
    assert (after["status"], after["progress"]) == (before["status"], before["progress"])
    assert after["last_callback"]["status"] == "mystery"
    assert [r["outcome"] for r in await h.callback_rows()] == ["created", "noted"]


async def test_body_size_is_the_size_received_not_the_cap(harness):
    """An over-size body stores its first cap bytes and the full size it had."""
    h = await harness(max_body_bytes=4096)
    body = b'{"id": "big", "pad": "' + b"x" * 100_000 + b'"}'
    assert (await h.client.post("/callbacks/runpod", data=body)).status == 200
    [row] = await h.callback_rows()
    assert (len(row["body"]), row["body_size"]) == (4096, len(body))


async def test_top_level_id_and_status_beside_a_5000_deep_field_are_read(harness):
    """A field nested 5000 deep does not hide the valid top-level id and status."""
    h = await harness()
    deep = b'{"a":' * 5000 + b"1" + b"}" * 5000
    body = b'{"id": "deep-1", "status": "COMPLETED", "output": {"ok": true}, "junk": ' + deep + b"}"
    assert (await h.client.post("/callbacks/runpod", data=body)).status == 200
    job = await h.job("deep-1")
    assert (job["status"], job["output"]) == ("COMPLETED", {"ok": True})


async def test_a_retried_jobs_second_attempt_applies_what_the_first_sent(harness):
    """After /retry the second attempt's callbacks apply even when they repeat the first attempt's
    bytes (RunPod's webhook) or webhook-ids (a worker naming messages by job), and the job finishes."""
    fake = FakeRunPod()
    h = await harness(runpod_endpoint_url=await harness.upstream(fake))
    submitted = await h.post("/v1/jobs", {"input": {"prompt": "x"}})
    job_id = (await submitted.json())["id"]
    running = json.dumps({"id": job_id, "status": "IN_PROGRESS"})
    progress = {"type": "progress", "job_id": job_id, "status": "IN_PROGRESS", "progress": {"stage": "shape"}}
    same_id = {"webhook-id": f"msg_{job_id}_progress_1"}

    async def first_and_second_attempt_common() -> None:
        assert (await h.post("/callbacks/runpod", running)).status == 200
        assert (await h.post("/callbacks/orfeas", progress, headers=same_id)).status == 200

    await first_and_second_attempt_common()
    await h.post("/callbacks/runpod", {"id": job_id, "status": "FAILED", "error": "out of memory"})
    assert (await h.job(job_id))["status"] == "FAILED"
    retried = await h.client.post(f"/v1/jobs/{job_id}/retry")
    assert (await retried.json())["status"] == "IN_QUEUE"
    await first_and_second_attempt_common()
    assert (await h.job(job_id))["status"] == "IN_PROGRESS"
    await h.post("/callbacks/runpod", {"id": job_id, "status": "COMPLETED", "output": {"glb": "s3://b/x"}})
    done = await h.job(job_id)
    assert (done["status"], done["output"], done["error"]) == ("COMPLETED", {"glb": "s3://b/x"}, None)
    outcomes = [r["outcome"] for r in await h.callback_rows()]
    assert outcomes == ["applied", "applied", "applied", "applied", "applied", "applied"]


class HangingSink:
    """A receiver that never answers until released; counts the requests it holds."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.holding = 0
        self.most_held = 0

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        return app

    async def _hook(self, request: web.Request) -> web.Response:
        self.holding += 1
        self.most_held = max(self.most_held, self.holding)
        try:
            await self.release.wait()
        finally:
            self.holding -= 1
        return web.Response()


async def _serve(app: web.Application, servers: list[TestServer]) -> str:
    server = TestServer(app)
    await server.start_server()
    servers.append(server)
    return str(server.make_url("/hook"))


async def _completed_job_with_webhook(h: Harness, job_id: str, url: str) -> None:
    now = time.time()
    store = h.runtime.store
    await store.create_job(Job(job_id, JobStatus.IN_QUEUE, now, now, client_webhook=url))
    await store.apply_event(StatusEvent(job_id, JobStatus.COMPLETED, f"done-{job_id}", output={"n": 1}))


async def test_hanging_receivers_delay_no_other_clients_webhook(harness):
    """Four receivers that never answer do not hold back another client's job.completed: it arrives
    at once, not after four request timeouts; one receiver gets at most PER_HOST requests at once."""
    h = await harness(upstream_timeout_s=5.0)
    servers: list[TestServer] = []
    hangers = [HangingSink() for _ in range(4)]
    good = WebhookSink()
    try:
        for n, hanger in enumerate(hangers):
            url = await _serve(hanger.app(), servers)
            for k in range(6 if n == 0 else 1):  # six messages queued for the first receiver
                await _completed_job_with_webhook(h, f"hang-{n}-{k}", url)
        await _completed_job_with_webhook(h, "good-1", await _serve(good.app(), servers))
        await _leader_fence(h)
        started = time.monotonic()
        await asyncio.wait_for(good.arrived.wait(), 4.0)  # sequential: 4 x 5 s timeouts first
        assert time.monotonic() - started < 3.0
        payload = json.loads(good.received[0][1])
        assert (payload["type"], payload["data"]["id"]) == ("job.completed", "good-1")
        assert hangers[0].most_held == deliveries.PER_HOST
        assert all(hanger.most_held == 1 for hanger in hangers[1:])
    finally:
        for hanger in hangers:
            hanger.release.set()
        for server in servers:
            await server.close()


async def _leader_fence(h: Harness) -> int:
    for _ in range(200):
        if h.runtime.role == "leader" and h.runtime.fence is not None:
            return h.runtime.fence
        await asyncio.sleep(0.05)
    raise AssertionError("the harness never became leader")
