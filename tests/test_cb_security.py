"""The closed doors, inside the app: per-job callback binding in the store's rules, the outbound
client for clients' webhooks, API key parsing and the conflict answer."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from callback_server.api_keys import match_key
from callback_server.auth import job_token, master_key, new_ref
from callback_server.deliveries import send
from callback_server.settings import ApiKey, ServerSettings, parse_api_keys
from callback_server.store.base import ApplyOutcome, Delivery, Job, StatusEvent, plan_event
from orfeas.errors import ConfigError
from orfeas_contract.outbound import OutboundClient
from orfeas_contract.status import JobStatus
from tests.cb_fakes import (
    CbEnv,
    FakeRunPod,
    Harness,
    WebhookSink,
    base_settings,
    close_harness,
    start_harness,
)
from tests.inputs_support import table_resolver
from tests.store_support import record

TOKEN = "master-token-0123456789abcdef"


@pytest_asyncio.fixture
async def env(tmp_path: Path) -> AsyncIterator[CbEnv]:
    cb = CbEnv(tmp_path)
    yield cb
    await cb.close()


async def _harness_in_front_of(env: CbEnv, fake: FakeRunPod) -> Harness:
    """Our server, with callbacks bound by TOKEN, submitting to `fake` served on loopback."""
    upstream = await env.serve(fake.app())
    return await env.harness(
        runpod_endpoint_url=str(upstream.make_url("")).rstrip("/"),
        public_url="http://cb.test",
        callback_token=TOKEN,
    )


def test_an_event_bound_to_another_ref_changes_nothing():
    """plan_event: a callback authenticated for ref X does not move a job stored with ref Y, nor a
    job stored without a ref; unbound events and the job's own ref apply as before."""
    now = time.time()
    job = Job("j1", JobStatus.IN_QUEUE, now, now, callback_ref="ref-of-j1")
    forged = StatusEvent("j1", JobStatus.COMPLETED, dedupe_key="d", callback_ref="ref-of-j2")
    assert plan_event(job, forged, seen=False, now=now) == (ApplyOutcome.WRONG_JOB, None)
    unbound_job = Job("j3", JobStatus.IN_QUEUE, now, now)
    assert plan_event(unbound_job, forged, seen=False, now=now)[0] is ApplyOutcome.WRONG_JOB
    own = StatusEvent("j1", JobStatus.COMPLETED, dedupe_key="d", callback_ref="ref-of-j1")
    assert plan_event(job, own, seen=False, now=now)[0] is ApplyOutcome.APPLIED
    operator = StatusEvent("j1", JobStatus.COMPLETED, dedupe_key="d")
    assert plan_event(job, operator, seen=False, now=now)[0] is ApplyOutcome.APPLIED


@pytest.mark.asyncio
async def test_a_refused_callback_does_not_use_up_the_real_ones_id(env):
    """A forged callback for job B with A's credentials and B's next webhook-id is refused and
    keeps no event: B's real callback with that id still applies (not a duplicate)."""
    fake = FakeRunPod()
    h = await _harness_in_front_of(env, fake)
    ids = []
    for prompt in ("a", "b"):
        resp = await h.client.post("/v1/jobs", json={"input": {"prompt": prompt}})
        ids.append((await resp.json())["id"])
    job_a, job_b = ids
    query_a = fake.bodies[job_a]["webhook"].split("?", 1)[1]
    query_b = fake.bodies[job_b]["webhook"].split("?", 1)[1]
    body = {"id": job_b, "status": "COMPLETED", "output": {"x": 1}}
    headers = {"webhook-id": "msg-b-1", "Content-Type": "application/json"}
    await h.post(f"/callbacks/runpod?{query_a}", body, headers=headers)
    assert (await h.job(job_b))["status"] == "IN_QUEUE"
    await h.post(f"/callbacks/runpod?{query_b}", body, headers=headers)
    assert (await h.job(job_b))["status"] == "COMPLETED"
    assert [r["outcome"] for r in h.callbacks()] == ["wrong_job", "applied"]


@pytest.mark.asyncio
async def test_an_early_callback_with_the_jobs_own_token_is_kept(env):
    """The worker can report before the submitting request stores the job: a callback with the
    job's own derived token creates it, and the submission fills in the rest."""
    holder: list[Harness] = []

    async def finish_first(job_id: str, body: dict[str, Any]) -> None:
        done = {"id": job_id, "status": "COMPLETED", "output": {"glb": "s3://b/early"}}
        query = body["webhook"].split("?", 1)[1]
        assert (await holder[0].post(f"/callbacks/runpod?{query}", done)).status == 200

    h = await _harness_in_front_of(env, FakeRunPod(before_answer=finish_first))
    holder.append(h)
    resp = await h.client.post("/v1/jobs", json={"input": {"prompt": "a cup"}})
    answer = await resp.json()
    assert answer["status"] == "COMPLETED"
    stored = await h.runtime.store.get_job(answer["id"])
    assert stored is not None
    assert stored.input == {"prompt": "a cup"}
    assert stored.callback_ref is not None


@pytest.mark.asyncio
async def test_an_early_callback_with_another_jobs_token_is_replaced_by_the_submission(env):
    """A row created ahead of the submission by credentials of another ref (a forged head start)
    is replaced whole when the job is stored: it starts IN_QUEUE, with its own ref."""
    holder: list[Harness] = []

    async def forge_first(job_id: str, body: dict[str, Any]) -> None:
        settings = holder[0].runtime.settings
        master = master_key(settings)
        assert master is not None
        other = new_ref()
        forged = {"id": job_id, "status": "COMPLETED", "output": {"forged": True}}
        url = f"/callbacks/runpod?ref={other}&token={job_token(master, other)}"
        assert (await holder[0].post(url, forged)).status == 200

    h = await _harness_in_front_of(env, FakeRunPod(before_answer=forge_first))
    holder.append(h)
    resp = await h.client.post("/v1/jobs", json={"input": {"prompt": "a cup"}})
    job = await h.job((await resp.json())["id"])
    assert job["status"] == "IN_QUEUE"
    assert job["output"] is None


@pytest.mark.asyncio
async def test_deliveries_connect_only_to_the_addresses_the_client_checked(env):
    """A name that resolves to loopback, alone or beside a public address, is refused before any
    connection; allowed, the POST goes to exactly the address the resolver gave (the name itself
    is not in DNS)."""
    sink = WebhookSink()
    server = await env.serve(sink.app())
    h = await env.harness()
    poster = h.runtime.webhooks
    assert poster is not None
    names = table_resolver(
        {"hooks.orfeas.test": ["127.0.0.1"], "mixed.orfeas.test": ["93.184.215.14", "10.0.0.7"]}
    )

    def delivery(host: str) -> Delivery:
        return Delivery(1, "job-1", f"http://{host}:{server.port}/hook", b"{}", "msg-1", 0, True, 0.0)

    poster.client = OutboundClient(resolver=names)
    for host in ("hooks.orfeas.test", "mixed.orfeas.test"):
        assert await send(h.runtime, delivery(host)) is False
    assert sink.received == []
    poster.client = OutboundClient(resolver=names, allow_private=True)
    assert await send(h.runtime, delivery("hooks.orfeas.test")) is True
    assert len(sink.received) == 1


@pytest.mark.asyncio
async def test_deliveries_refuse_private_address_literals(env):
    """An outbox row naming a loopback address literal is refused by `send` without a connection
    when private webhooks are not allowed."""
    sink = WebhookSink()
    server = await env.serve(sink.app())
    h = await env.harness(allow_private_webhooks=False)
    delivery = Delivery(1, "job-1", f"http://127.0.0.1:{server.port}/hook", b"{}", "msg-1", 0, True, 0.0)
    assert await send(h.runtime, delivery) is False
    await asyncio.sleep(0.05)
    assert sink.received == []


def test_api_keys_parse_with_labels_and_refuse_weak_ones():
    """API_KEYS: `label:key` or a bare key (labelled by position); short keys, bad labels and a
    label given twice fail at start naming the variable; the key never shows in a repr."""
    keys = parse_api_keys("alice:aaaaaaaaaaaaaaaa1, bbbbbbbbbbbbbbbb2 ,")
    assert keys == (ApiKey("alice", "aaaaaaaaaaaaaaaa1"), ApiKey("key-2", "bbbbbbbbbbbbbbbb2"))
    assert "aaaaaaaa" not in repr(ServerSettings(api_keys=keys))
    assert match_key(keys, "bbbbbbbbbbbbbbbb2") == keys[1]
    assert match_key(keys, "bbbbbbbbbbbbbbbb") is None
    for raw in (
        "short",
        "a b:cccccccccccccccccc",
        "x:cccccccccccccccccc,x:dddddddddddddddddd",
        "x:ccc ccccccccccccccc",
    ):
        with pytest.raises(ConfigError) as caught:
            parse_api_keys(raw)
        assert caught.value.field == "API_KEYS"
    assert ServerSettings.from_env({}).api_keys == ()


@pytest.mark.asyncio
async def test_unsplittable_webhook_urls_are_invalid_input(env):
    """A webhook URL that cannot even be split (a broken IPv6 literal) is a 400 naming the field."""
    fake = FakeRunPod()
    upstream = await env.serve(fake.app())
    h = await env.harness(
        runpod_endpoint_url=str(upstream.make_url("")).rstrip("/"), allow_private_webhooks=False
    )
    for body, field in (
        ({"input": {"prompt": "x"}, "webhook": "http://[::1/hook"}, "webhook"),
        ({"input": {"prompt": "x"}, "webhook": "http://hooks.example.com:99999/hook"}, "webhook"),
    ):
        resp = await h.client.post("/v1/jobs", json=body)
        assert resp.status == 400, body
        assert (await resp.json())["error"]["field"] == field
    assert fake.calls == []


@pytest.mark.asyncio
async def test_idempotency_keys_are_scoped_to_the_api_key(env):
    """Two clients using one idempotency key get their own jobs: B never receives A's job (not even
    with A's exact input), and a conflict names only the caller's own job."""
    fake = FakeRunPod()
    upstream = await env.serve(fake.app())
    keys = (ApiKey("shop", "shop-key-0123456789abcdef"), ApiKey("ops", "ops-key-0123456789abcdef0"))
    h = await env.harness(runpod_endpoint_url=str(upstream.make_url("")).rstrip("/"), api_keys=keys)
    shop = {"Authorization": f"Bearer {keys[0].key}"}
    ops = {"Authorization": f"Bearer {keys[1].key}"}
    body = {"input": {"prompt": "a cup"}, "idempotency_key": "order-1"}
    first = await h.client.post("/v1/jobs", json=body, headers=shop)
    assert first.status == 201
    job_a = (await first.json())["id"]
    same_by_other = await h.client.post("/v1/jobs", json=body, headers=ops)
    assert same_by_other.status == 201
    assert (await same_by_other.json())["id"] != job_a
    conflict = await h.client.post(
        "/v1/jobs", json={"input": {"prompt": "a vase"}, "idempotency_key": "order-1"}, headers=ops
    )
    assert conflict.status == 409
    assert (await conflict.json())["id"] != job_a
    again = await h.client.post("/v1/jobs", json=body, headers=shop)
    assert (again.status, (await again.json())["id"]) == (200, job_a)


@pytest.mark.asyncio
async def test_a_replayed_callback_stays_bound_to_the_ref_it_named(tmp_path: Path):
    """A callback stored as accepted but never applied (a crash) is replayed at start bound to the
    ref its stored query names: for a job stored with another ref it changes nothing."""
    from callback_server.store import open_store

    db = tmp_path / "replay-ref.db"
    now = time.time()
    async with open_store(f"sqlite:///{db}") as store:
        await store.create_job(
            Job("bound-job", JobStatus.IN_QUEUE, now, now, callback_ref="ref-own-000000000000")
        )
        body = b'{"id": "bound-job", "status": "COMPLETED", "output": {"forged": true}}'
        await record(
            store, "runpod", {}, body, "ref=ref-other-0000000000&token=%5Bredacted%5D", accepted=True
        )
        body = b'{"id": "bound-job", "status": "IN_PROGRESS"}'
        await record(
            store, "runpod", {}, body, "ref=ref-own-000000000000&token=%5Bredacted%5D", accepted=True
        )
    h = await start_harness(tmp_path, base_settings(callback_token=TOKEN), db_path=db)
    try:
        for _ in range(100):
            if all(row["outcome"] is not None for row in h.callbacks()):
                break
            await asyncio.sleep(0.05)
        assert [row["outcome"] for row in h.callbacks()] == ["wrong_job", "applied"]
        assert (await h.job("bound-job"))["status"] == "IN_PROGRESS"
    finally:
        await close_harness(h)
