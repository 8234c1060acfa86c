"""The Store contract, run against SQLite and (with ORFEAS_TEST_POSTGRES_URL) PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path
from urllib.parse import parse_qsl

import pytest
import pytest_asyncio

from callback_server.store import LEADER_LEASE, ApplyOutcome, Job, StaleFence, StatusEvent, Store
from orfeas_contract.status import JobStatus
from tests.store_support import StoreMaker, record, run_sql, table_rows

pytestmark = pytest.mark.asyncio

REPO = Path(__file__).resolve().parent.parent


@pytest_asyncio.fixture
async def store(maker: StoreMaker) -> Store:
    return await maker.new()


def ev(job_id: str, status: JobStatus, key: str, **kw: object) -> StatusEvent:
    return StatusEvent(job_id, status, key, **kw)  # type: ignore[arg-type]


def queued_job(job_id: str, **kw: object) -> Job:
    now = time.time()
    return Job(id=job_id, status=JobStatus.IN_QUEUE, created_at=now, updated_at=now, **kw)  # type: ignore[arg-type]


# -- durability ---------------------------------------------------------------------------------


async def test_callback_survives_close_and_reopen(maker: StoreMaker) -> None:
    """A recorded callback (body, headers, query, accepted flag) is read back by a fresh instance."""
    first = await maker.new()
    body = b"\x00\xffnot json at all"
    callback_id = await record(first, "kie", {"Webhook-Id": "m1"}, body, "taskId=abc", accepted=False)
    await maker.close(first)
    second = await maker.new()
    assert await second.unapplied_callbacks(10) == [
        (callback_id, "kie", {"Webhook-Id": "m1"}, body, "taskId=abc", False)
    ]


async def test_callback_survives_sigkill_right_after_record(maker: StoreMaker) -> None:
    """A process killed with SIGKILL just after record_and_apply returned still left its row."""
    script = textwrap.dedent(
        """
        import asyncio, sys, time
        from callback_server.store import open_store

        async def main():
            store = open_store(sys.argv[1])
            await store.open()
            ids = [(await store.record_and_apply("runpod", {"n": str(i)}, b"body-%d" % i, "",
                                                 accepted=True, event=None)).callback_id
                   for i in range(20)]
            print(" ".join(map(str, ids)), flush=True)
            time.sleep(60)  # blocks the loop: nothing more can be written before the kill

        asyncio.run(main())
        """
    )
    # A plain Popen, waited on by itself: asyncio's child watcher thread can lose the exit status
    # to another reaper and report 255 instead of the kill.
    proc = await asyncio.to_thread(
        subprocess.Popen,
        [sys.executable, "-c", script, maker.url],
        cwd=REPO,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 60)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        await asyncio.to_thread(proc.wait, 30)
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    ids = [int(x) for x in line.split()]
    assert len(ids) == 20
    store = await maker.new()
    rows = await store.unapplied_callbacks(100)
    assert [r[0] for r in rows] == ids
    assert [r[3] for r in rows] == [b"body-%d" % i for i in range(20)]


async def test_body_is_capped_but_recorded(maker: StoreMaker) -> None:
    """A body over max_body_bytes is stored cut to the cap."""
    store = await maker.new(max_body_bytes=16)
    await record(store, "runpod", {}, b"a" * 100, "", accepted=True)
    [stored] = await store.unapplied_callbacks(5)
    body = stored.body
    assert body == b"a" * 16


async def test_any_query_is_stored_escaped_with_a_note(maker: StoreMaker) -> None:
    """A query holding NUL or a non-UTF-8 byte is stored percent-encoded, readable the same way by
    parse_qsl, and the row's note says so beside the caller's note and full body size."""
    store = await maker.new()
    await store.record_and_apply(
        "generic",
        {},
        b"\x00body",
        "a=\x00&b=\udcff",
        accepted=True,
        event=None,
        outcome="no_task_id",
        body_size=12345,
        note="caller's note",
    )
    [stored] = await store.unapplied_callbacks(5) or [None]
    assert stored is None  # marked with its outcome
    await record(store, "generic", {}, b"", "c=\x00", accepted=True)
    [unmarked] = await store.unapplied_callbacks(5)
    assert parse_qsl(unmarked.query) == [("c", "\x00")]
    rows = await table_rows(maker.url, "callbacks")
    assert rows[0]["query"] == "a=%00&b=%FF"
    assert rows[0]["note"] == "caller's note; query: NUL or non-UTF-8 characters stored percent-encoded"
    assert rows[0]["body_size"] == 12345
    assert bytes(rows[0]["body"]) == b"\x00body"


async def test_last_callback_is_kept_whatever_the_outcome(maker: StoreMaker) -> None:
    """A callback's event sets the job's last callback even when stale, duplicate or stateless."""
    store = await maker.new()
    await store.apply_event(
        ev("lc", JobStatus.COMPLETED, "k1", from_callback=True, provider="kie", word="success")
    )
    outcome = await store.apply_event(
        ev("lc", JobStatus.IN_PROGRESS, "k2", from_callback=True, provider="kie", word="generating")
    )
    assert outcome is ApplyOutcome.STALE
    job = await store.get_job("lc")
    assert job is not None
    assert job.status is JobStatus.COMPLETED
    assert job.last_callback is not None
    assert job.last_callback["status"] == "generating"
    unknown = await store.apply_event(ev("lc2", JobStatus.IN_PROGRESS, "k3", from_callback=True, known=False))
    created = await store.get_job("lc2")
    assert unknown is ApplyOutcome.CREATED
    assert created is not None
    assert created.progress == {"message": "reported, state unknown"}


async def test_reopen_keeps_schema_and_jobs(maker: StoreMaker) -> None:
    """Opening twice on the same database keeps every job (schema creation is idempotent)."""
    first = await maker.new()
    await first.apply_event(ev("j", JobStatus.IN_PROGRESS, "k", progress={"stage": "shape"}))
    await maker.close(first)
    again = await maker.new()
    job = await again.get_job("j")
    assert job is not None
    assert job.status is JobStatus.IN_PROGRESS
    assert job.progress == {"stage": "shape"}


# -- apply_event ---------------------------------------------------------------------------------


async def test_unknown_job_is_created(store: Store) -> None:
    """An event for a job the store never saw creates it in the event's state."""
    outcome = await store.apply_event(
        ev("new", JobStatus.COMPLETED, "k", output={"url": "s3://b/k"}, provider="kie")
    )
    assert outcome is ApplyOutcome.CREATED
    job = await store.get_job("new")
    assert job is not None
    assert (job.status, job.output, job.provider) == (JobStatus.COMPLETED, {"url": "s3://b/k"}, "kie")


async def test_state_only_moves_forward(store: Store) -> None:
    """Queued → in progress → completed applies; a later IN_QUEUE or FAILED is stale."""
    await store.create_job(queued_job("j"))
    assert await store.apply_event(ev("j", JobStatus.IN_PROGRESS, "a")) is ApplyOutcome.APPLIED
    assert await store.apply_event(ev("j", JobStatus.IN_QUEUE, "b")) is ApplyOutcome.STALE
    assert await store.apply_event(ev("j", JobStatus.COMPLETED, "c", output=1)) is ApplyOutcome.APPLIED
    assert await store.apply_event(ev("j", JobStatus.FAILED, "d", error="x")) is ApplyOutcome.STALE
    assert await store.apply_event(ev("j", JobStatus.IN_PROGRESS, "e")) is ApplyOutcome.STALE
    job = await store.get_job("j")
    assert job is not None
    assert (job.status, job.output, job.error) == (JobStatus.COMPLETED, 1, None)


async def test_progress_updates_within_in_progress(store: Store) -> None:
    """IN_PROGRESS → IN_PROGRESS with new progress applies and moves updated_at."""
    await store.apply_event(ev("j", JobStatus.IN_PROGRESS, "a", progress={"fraction": 0.1}))
    before = await store.get_job("j")
    outcome = await store.apply_event(ev("j", JobStatus.IN_PROGRESS, "b", progress={"fraction": 0.5}))
    after = await store.get_job("j")
    assert outcome is ApplyOutcome.APPLIED
    assert before is not None
    assert after is not None
    assert after.progress == {"fraction": 0.5}
    assert after.updated_at > before.updated_at


async def test_duplicate_is_recorded_not_applied(store: Store) -> None:
    """A second event with the same dedupe key is DUPLICATE even when it would move forward."""
    await store.apply_event(ev("j", JobStatus.IN_PROGRESS, "same"))
    assert await store.apply_event(ev("j", JobStatus.COMPLETED, "same")) is ApplyOutcome.DUPLICATE
    assert await store.apply_event(ev("j", JobStatus.COMPLETED, "same")) is ApplyOutcome.DUPLICATE
    job = await store.get_job("j")
    assert job is not None
    assert job.status is JobStatus.IN_PROGRESS


async def test_attempt_is_the_one_way_back(store: Store) -> None:
    """A higher attempt moves a finished job back to IN_QUEUE; events of earlier attempts are stale."""
    await store.apply_event(ev("j", JobStatus.FAILED, "f", error={"code": "oom"}))
    assert await store.apply_event(ev("j", JobStatus.IN_QUEUE, "r1", attempt=1)) is ApplyOutcome.APPLIED
    job = await store.get_job("j")
    assert job is not None
    assert (job.status, job.attempt, job.error) == (JobStatus.IN_QUEUE, 1, None)
    assert await store.apply_event(ev("j", JobStatus.COMPLETED, "late", attempt=0)) is ApplyOutcome.STALE
    assert await store.apply_event(ev("j", JobStatus.IN_PROGRESS, "p", attempt=1)) is ApplyOutcome.APPLIED
    assert await store.apply_event(ev("j", JobStatus.COMPLETED, "c", output=2)) is ApplyOutcome.APPLIED
    job = await store.get_job("j")
    assert job is not None
    assert (job.status, job.output, job.attempt) == (JobStatus.COMPLETED, 2, 1)


async def test_apply_marks_its_callback(store: Store) -> None:
    """apply_event with a callback id marks it, so it leaves unapplied_callbacks; mark_callback too."""
    first = await record(store, "runpod", {}, b"{}", "", accepted=True)
    second = await record(store, "runpod", {}, b"junk", "", accepted=True)
    third = await record(store, "runpod", {}, b"forged", "", accepted=False)
    await store.apply_event(ev("j", JobStatus.IN_QUEUE, "k"), callback_id=first)
    await store.mark_callback(third, job_id=None, outcome="rejected")
    assert [r[0] for r in await store.unapplied_callbacks(10)] == [second]


async def test_record_and_apply_is_one_write(store: Store) -> None:
    """record_and_apply stores the callback and applies its event; without one it marks the outcome."""
    done = await store.record_and_apply(
        "runpod", {"a": "1"}, b'{"id":"j"}', "", accepted=True, event=ev("j", JobStatus.IN_PROGRESS, "k")
    )
    assert done.outcome is ApplyOutcome.CREATED
    again = await store.record_and_apply(
        "runpod", {"a": "1"}, b'{"id":"j"}', "", accepted=True, event=ev("j", JobStatus.IN_PROGRESS, "k")
    )
    assert again.outcome is ApplyOutcome.DUPLICATE
    assert again.callback_id > done.callback_id
    miss = await store.record_and_apply("kie", {}, b"", "", accepted=True, event=None, outcome="no_task_id")
    assert miss.outcome is None
    assert await store.unapplied_callbacks(10) == []


# -- jobs ----------------------------------------------------------------------------------------


async def test_idempotency_key_lookup_and_create_race(store: Store) -> None:
    """The key finds its job; a second create with the key of a running job returns the first job."""
    created = await store.create_job(queued_job("a", idempotency_key="key-1", input={"prompt": "cat"}))
    assert created.id == "a"
    other = await store.create_job(queued_job("b", idempotency_key="key-1"))
    assert other.id == "a"
    assert await store.get_job("b") is None
    found = await store.find_by_idempotency_key("key-1")
    assert found is not None
    assert found.id == "a"
    assert found.input == {"prompt": "cat"}
    assert await store.find_by_idempotency_key("nope") is None
    await store.apply_event(ev("a", JobStatus.COMPLETED, "done"))
    fresh = await store.create_job(queued_job("c", idempotency_key="key-1"))
    assert fresh.id == "c"
    again = await store.create_job(queued_job("c", idempotency_key="key-other"))
    assert again.idempotency_key == "key-1"  # the id was known: the stored job is returned


async def test_job_fields_round_trip(store: Store) -> None:
    """Every Job field is stored and read back unchanged."""
    job = Job(
        id="full",
        status=JobStatus.IN_QUEUE,
        created_at=1000.5,
        updated_at=1001.25,
        progress={"stage": "input", "fraction": 0.0},
        output=[1, "two", {"three": 3}],
        error=None,
        provider="runpod",
        input={"image": "data:...", "steps": 5},
        idempotency_key="ik",
        client_webhook="https://example.test/hook",
        attempt=2,
        upstream_checked_at=1002.0,
        deadline_at=9999.0,
    )
    await store.create_job(job)
    assert await store.get_job("full") == job


async def test_stale_jobs_selection(store: Store) -> None:
    """stale_jobs: non-terminal, created after the window start, not updated nor checked recently."""
    now = time.time()
    await store.create_job(Job("old-unchecked", JobStatus.IN_QUEUE, now - 100, now - 100))
    await store.create_job(Job("old-checked", JobStatus.IN_PROGRESS, now - 100, now - 100))
    await store.create_job(Job("fresh", JobStatus.IN_QUEUE, now - 1, now - 1))
    await store.create_job(Job("finished", JobStatus.COMPLETED, now - 100, now - 100))
    await store.create_job(Job("too-old", JobStatus.IN_QUEUE, now - 5000, now - 5000))
    await store.mark_upstream_checked("old-checked", now - 2)
    stale = await store.stale_jobs(checked_before=now - 10, created_after=now - 1800, limit=10)
    assert [j.id for j in stale] == ["old-unchecked"]
    assert (await store.get_job("old-checked")).upstream_checked_at == pytest.approx(now - 2)  # type: ignore[union-attr]


async def test_recent_jobs_newest_first(store: Store) -> None:
    """recent_jobs lists the most recently updated jobs first, up to the limit."""
    for name in ("a", "b", "c"):
        await store.apply_event(ev(name, JobStatus.IN_QUEUE, "k"))
    await store.apply_event(ev("a", JobStatus.IN_PROGRESS, "k2"))
    assert [j.id for j in await store.recent_jobs(2)] == ["a", "c"]


async def test_expire_jobs_needs_the_current_fence(maker: StoreMaker) -> None:
    """expire_jobs times out past-deadline jobs for the leader; a stale leader's fence is refused."""
    store = await maker.new()
    now = time.time()
    await store.create_job(queued_job("late", deadline_at=now - 1))
    await store.create_job(queued_job("on-time", deadline_at=now + 3600))
    await store.create_job(Job("done", JobStatus.COMPLETED, now, now, deadline_at=now - 1))
    old = await store.acquire_lease(LEADER_LEASE, "a", 0.3)
    assert old is not None
    await asyncio.sleep(0.5)
    new = await store.acquire_lease(LEADER_LEASE, "b", 30)
    assert new == old + 1
    with pytest.raises(StaleFence):
        await store.expire_jobs(now=now, fence=old)
    assert (await store.get_job("late")).status is JobStatus.IN_QUEUE  # type: ignore[union-attr]
    assert await store.expire_jobs(now=now, fence=new) == ["late"]
    late = await store.get_job("late")
    assert late is not None
    assert late.status is JobStatus.TIMED_OUT
    assert late.error["code"] == "timed_out"
    assert (await store.get_job("on-time")).status is JobStatus.IN_QUEUE  # type: ignore[union-attr]
    assert await store.expire_jobs(now=now, fence=new) == []


# -- outbox --------------------------------------------------------------------------------------


async def test_outbox_delivery_life(maker: StoreMaker) -> None:
    """A job's changes queue deliveries that come due, retry later, finish; a replayed change queues
    none again; a stale fence cannot finish one."""
    store = await maker.new()
    fence = await store.acquire_lease(LEADER_LEASE, "me", 30)
    assert fence is not None
    await store.create_job(queued_job("j", client_webhook="https://c.test/h"))
    await store.apply_event(ev("j", JobStatus.IN_PROGRESS, "k-1", progress={"stage": "shape"}))
    await store.apply_event(ev("j", JobStatus.COMPLETED, "k-2", output={"glb": "s3://b/x"}))
    await store.apply_event(ev("j", JobStatus.COMPLETED, "k-2", output={"glb": "s3://b/x"}))  # replayed
    due = await store.due_deliveries(time.time() + 1, 10)
    assert [(d.job_id, d.terminal, d.attempts) for d in due] == [("j", False, 0), ("j", True, 0)]
    assert [json.loads(d.body)["type"] for d in due] == ["job.in_progress", "job.completed"]
    progress, first = due
    later = time.time() + 60
    await store.finish_delivery(first.id, ok=False, next_attempt_at=later, fence=fence)
    await store.finish_delivery(progress.id, ok=True, next_attempt_at=None, fence=fence)
    assert await store.due_deliveries(time.time() + 1, 10) == []
    [retry] = await store.due_deliveries(later + 1, 10)
    assert (retry.msg_id, retry.attempts) == (first.msg_id, 1)
    with pytest.raises(StaleFence):
        await store.finish_delivery(retry.id, ok=True, next_attempt_at=None, fence=fence + 1)
    await store.finish_delivery(retry.id, ok=False, next_attempt_at=None, fence=fence)  # gives up
    assert await store.due_deliveries(later + 1000, 10) == []


# -- leases --------------------------------------------------------------------------------------


async def test_lease_two_holders_expiry_and_fences(maker: StoreMaker) -> None:
    """One holder at a time; the same holder re-acquires its fence; expiry hands over with fence + 1."""
    a, b = await maker.new(), await maker.new()
    first = await a.acquire_lease("lock", "a", 0.4)
    assert first == 1
    assert await b.acquire_lease("lock", "b", 10) is None
    assert await a.acquire_lease("lock", "a", 0.4) == first
    assert await b.renew_lease("lock", "b", first, 10) is False
    assert await a.renew_lease("lock", "a", first, 0.4) is True
    await asyncio.sleep(0.6)
    assert await a.renew_lease("lock", "a", first, 10) is False  # expired: lost
    second = await b.acquire_lease("lock", "b", 10)
    assert second == first + 1
    assert await b.renew_lease("lock", "b", second, 10) is True  # b holds it, at the new fence
    await a.release_lease("lock", "a", first)  # not the holder: no effect
    assert await a.acquire_lease("lock", "a", 10) is None
    await b.release_lease("lock", "b", second)
    assert await a.acquire_lease("lock", "a", 10) == second + 1


# -- change notification -------------------------------------------------------------------------


async def test_wait_for_change_wakes_on_another_instance(maker: StoreMaker) -> None:
    """A waiter on one instance wakes when another instance (same database) changes the job."""
    waiter_store, writer_store = await maker.new(), await maker.new()
    await writer_store.apply_event(ev("j", JobStatus.IN_QUEUE, "q"))
    job = await waiter_store.get_job("j")
    assert job is not None
    loop = asyncio.get_running_loop()
    started = loop.time()
    waiting = asyncio.create_task(waiter_store.wait_for_change("j", job.updated_at, 20))
    await asyncio.sleep(0.2)
    assert not waiting.done()
    await writer_store.apply_event(ev("j", JobStatus.IN_PROGRESS, "p"))
    await asyncio.wait_for(waiting, 10)
    assert loop.time() - started < 10  # woke on the change, long before its 20 s
    changed = await waiter_store.get_job("j")
    assert changed is not None
    assert changed.status is JobStatus.IN_PROGRESS


async def test_wait_for_change_times_out_and_returns_at_once_when_changed(store: Store) -> None:
    """Without a change the wait lasts wait_s; with a newer row than `since` it returns at once."""
    await store.apply_event(ev("j", JobStatus.IN_QUEUE, "q"))
    job = await store.get_job("j")
    assert job is not None
    waiting = asyncio.create_task(store.wait_for_change("j", job.updated_at, 0.5))
    await asyncio.sleep(0.3)
    assert not waiting.done()
    await asyncio.wait_for(waiting, 5)
    await asyncio.wait_for(store.wait_for_change("j", job.updated_at - 1, 30), 5)


async def test_wait_for_change_sees_a_job_created_meanwhile(store: Store) -> None:
    """Waiting on an unknown id returns when a callback creates the job."""
    waiting = asyncio.create_task(store.wait_for_change("later", 0.0, 20))
    await asyncio.sleep(0.1)
    await store.apply_event(ev("later", JobStatus.IN_PROGRESS, "p"))
    await asyncio.wait_for(waiting, 10)


# -- concurrency ---------------------------------------------------------------------------------


async def test_concurrent_events_on_one_job_stay_consistent(maker: StoreMaker) -> None:
    """100 concurrent events (two instances, duplicates, every state) leave one consistent history."""
    a, b = await maker.new(), await maker.new()
    statuses = [JobStatus.IN_QUEUE, JobStatus.IN_PROGRESS, JobStatus.COMPLETED, JobStatus.FAILED]
    events = [ev("hot", statuses[i % 4], f"k{i % 60}", progress={"i": i}) for i in range(100)]
    outcomes = await asyncio.gather(*[(a if i % 2 else b).apply_event(e) for i, e in enumerate(events)])
    counts = Counter(outcomes)
    assert counts[ApplyOutcome.CREATED] == 1
    assert counts[ApplyOutcome.DUPLICATE] == 40  # 60 distinct keys among 100 events
    terminal_applied = [
        e for e, o in zip(events, outcomes, strict=True) if o is ApplyOutcome.APPLIED and e.status.is_terminal
    ]
    created = [e for e, o in zip(events, outcomes, strict=True) if o is ApplyOutcome.CREATED]
    finals = terminal_applied + [e for e in created if e.status.is_terminal]
    assert len(finals) == 1  # exactly one event finished the job
    job = await a.get_job("hot")
    assert job is not None
    assert job.status is finals[0].status
    assert job.progress == finals[0].progress


# -- client webhooks queued with the change, submissions merged, upstream checks claimed ---------


async def test_applied_change_queues_the_client_webhook_in_the_same_write(store: Store) -> None:
    """An applied change on a job with a client webhook is in the outbox when apply_event returns;
    a duplicate or stale event queues nothing, and only terminal deliveries are marked for retry."""
    await store.create_job(queued_job("j", client_webhook="https://c.test/hook"))
    assert await store.due_deliveries(time.time() + 1, 10) == []  # storing the submission queues nothing
    await store.apply_event(ev("j", JobStatus.IN_PROGRESS, "p", progress={"fraction": 0.5}))
    await store.apply_event(ev("j", JobStatus.IN_PROGRESS, "p", progress={"fraction": 0.9}))  # duplicate
    await store.apply_event(ev("j", JobStatus.COMPLETED, "c", output={"glb": "s3://b/j"}))
    await store.apply_event(ev("j", JobStatus.FAILED, "late"))  # stale
    due = await store.due_deliveries(time.time() + 1, 10)
    assert [(d.job_id, d.url, d.terminal) for d in due] == [
        ("j", "https://c.test/hook", False),
        ("j", "https://c.test/hook", True),
    ]
    progress, done = (json.loads(d.body) for d in due)
    assert (progress["type"], progress["data"]["progress"]) == ("job.in_progress", {"fraction": 0.5})
    assert (done["type"], done["data"]["status"], done["data"]["output"]) == (
        "job.completed",
        "COMPLETED",
        {"glb": "s3://b/j"},
    )
    assert len({d.msg_id for d in due}) == 2
    await store.apply_event(ev("other", JobStatus.COMPLETED, "c"))  # no client webhook: nothing queued
    assert len(await store.due_deliveries(time.time() + 1, 10)) == 2


async def test_submission_fills_a_job_a_callback_created_first(store: Store) -> None:
    """A callback that beat the submitting request created the job: create_job keeps its state,
    fills the submission's fields, and queues the client webhook when the job is already terminal."""
    await store.apply_event(ev("early", JobStatus.COMPLETED, "done", output={"glb": "x"}))
    submitted = queued_job(
        "early",
        input={"prompt": "cat"},
        idempotency_key="ik-early",
        client_webhook="https://c.test/hook",
        deadline_at=time.time() + 60,
    )
    stored = await store.create_job(submitted)
    assert (stored.status, stored.output, stored.input) == (
        JobStatus.COMPLETED,
        {"glb": "x"},
        {"prompt": "cat"},
    )
    assert (stored.idempotency_key, stored.client_webhook) == ("ik-early", "https://c.test/hook")
    assert await store.get_job("early") == stored
    [delivery] = await store.due_deliveries(time.time() + 1, 10)
    assert (delivery.job_id, delivery.terminal) == ("early", True)
    assert json.loads(delivery.body)["data"]["status"] == "COMPLETED"
    again = await store.create_job(submitted)  # nothing missing any more: unchanged, nothing queued
    assert again == stored
    assert len(await store.due_deliveries(time.time() + 1, 10)) == 1


async def test_upstream_check_is_claimed_once_per_interval(maker: StoreMaker) -> None:
    """Of many instances claiming one job's upstream check at once, one wins; the next claim wins
    only after the interval; a terminal or unknown job is never claimed."""
    stores = [await maker.new() for _ in range(3)]
    await stores[0].create_job(queued_job("j"))
    now = time.time()
    claims = await asyncio.gather(
        *[stores[i % 3].mark_upstream_checked("j", now, min_interval=10) for i in range(12)]
    )
    assert claims.count(True) == 1
    assert await stores[1].mark_upstream_checked("j", now + 5, min_interval=10) is False
    assert await stores[2].mark_upstream_checked("j", now + 10, min_interval=10) is True
    job = await stores[0].get_job("j")
    assert job is not None
    assert job.upstream_checked_at == pytest.approx(now + 10)
    await stores[0].apply_event(ev("j", JobStatus.COMPLETED, "done"))
    assert await stores[0].mark_upstream_checked("j", now + 100, min_interval=10) is False
    assert await stores[0].mark_upstream_checked("unknown", now, min_interval=10) is False


async def test_retried_job_gets_a_new_deadline_and_can_time_out_again(maker: StoreMaker) -> None:
    """A job timed out, then retried with a new deadline, is not expired before it and is after it."""
    store = await maker.new()
    fence = await store.acquire_lease(LEADER_LEASE, "me", 30)
    assert fence is not None
    now = time.time()
    await store.create_job(queued_job("j", deadline_at=now - 1))
    assert await store.expire_jobs(now=now, fence=fence) == ["j"]
    retry = ev("j", JobStatus.IN_QUEUE, "retry:1", attempt=1, deadline_at=now + 100)
    assert await store.apply_event(retry) is ApplyOutcome.APPLIED
    retried = await store.get_job("j")
    assert retried is not None
    assert (retried.status, retried.deadline_at) == (JobStatus.IN_QUEUE, pytest.approx(now + 100))
    assert await store.expire_jobs(now=now + 50, fence=fence) == []
    assert await store.expire_jobs(now=now + 101, fence=fence) == ["j"]
    assert (await store.get_job("j")).status is JobStatus.TIMED_OUT  # type: ignore[union-attr]


async def test_an_event_bound_to_another_ref_is_refused_and_keeps_no_event(store: Store) -> None:
    """record_and_apply with another job's ref: WRONG_JOB, the job unchanged, the callback marked
    wrong_job, and no job event that would make the job's own callback with that key a duplicate."""
    await store.create_job(queued_job("bound", callback_ref="ref-bound-0000000000"))
    forged = ev("bound", JobStatus.COMPLETED, "webhook-id:m1", callback_ref="ref-other-0000000000")
    done = await store.record_and_apply("runpod", {}, b"{}", "", accepted=True, event=forged)
    assert done.outcome is ApplyOutcome.WRONG_JOB
    job = await store.get_job("bound")
    assert job is not None
    assert job.status is JobStatus.IN_QUEUE
    assert job.callback_ref == "ref-bound-0000000000"
    own = ev("bound", JobStatus.COMPLETED, "webhook-id:m1", callback_ref="ref-bound-0000000000")
    assert (await store.record_and_apply("runpod", {}, b"{}", "", accepted=True, event=own)).outcome is (
        ApplyOutcome.APPLIED
    )
    assert await store.unapplied_callbacks(10) == []


async def test_a_job_created_by_a_bound_callback_keeps_its_ref_and_a_foreign_one_is_replaced(
    store: Store,
) -> None:
    """A callback ahead of the submission creates the job with its ref: the same ref's submission
    fills it in; a submission with another ref replaces the row whole (back to IN_QUEUE)."""
    await store.apply_event(
        ev("early-own", JobStatus.COMPLETED, "d1", output={"x": 1}, callback_ref="ref-own")
    )
    own = await store.create_job(queued_job("early-own", input={"p": 1}, callback_ref="ref-own"))
    assert (own.status, own.input, own.callback_ref) == (JobStatus.COMPLETED, {"p": 1}, "ref-own")
    await store.apply_event(
        ev("early-foreign", JobStatus.COMPLETED, "d2", output={"x": 1}, callback_ref="ref-x")
    )
    replaced = await store.create_job(queued_job("early-foreign", input={"p": 2}, callback_ref="ref-real"))
    assert (replaced.status, replaced.output, replaced.callback_ref) == (JobStatus.IN_QUEUE, None, "ref-real")
    assert await store.get_job("early-foreign") == replaced


async def test_concurrent_callbacks_keep_their_ids_and_dedupe(store: Store) -> None:
    """Callbacks written together (one batch) each get their own row id, and the same dedupe key
    twice among them applies once."""
    await store.apply_event(ev("batch", JobStatus.IN_QUEUE, "first"))
    results = await asyncio.gather(
        *(
            store.record_and_apply(
                "runpod",
                {"n": str(n)},
                f"body {n}".encode(),
                "",
                accepted=True,
                event=ev("batch", JobStatus.IN_PROGRESS, "same-key" if n % 2 else f"key-{n}"),
            )
            for n in range(40)
        )
    )
    ids = [r.callback_id for r in results]
    assert len(set(ids)) == 40
    same = [r.outcome for n, r in enumerate(results) if n % 2]
    assert same.count(ApplyOutcome.APPLIED) == 1
    assert same.count(ApplyOutcome.DUPLICATE) == 19
    await record(store, "runpod", {}, b"after", "", accepted=True)
    rows = await store.unapplied_callbacks(100)
    assert [r.body for r in rows] == [b"after"]  # every batched one was marked with its outcome
    assert rows[0].id > max(ids)


# A version-3 database taken back to version 2: the names schema 3 changed, its columns removed.
_BACK_TO_2 = [
    "ALTER TABLE jobs DROP COLUMN run_id",
    "ALTER TABLE jobs DROP COLUMN run_attempt",
    "ALTER TABLE jobs RENAME COLUMN attempt TO retry_epoch",
    "ALTER TABLE job_events RENAME COLUMN attempt TO retry_epoch",
    "ALTER TABLE leases RENAME COLUMN fence TO epoch",
    "DELETE FROM schema_version",
]
_BACK_TO_1 = [
    *_BACK_TO_2,
    "ALTER TABLE callbacks DROP COLUMN note",
    "ALTER TABLE jobs DROP COLUMN last_callback",
    "ALTER TABLE jobs DROP COLUMN callback_ref",
]


async def _old_database(maker: StoreMaker, version: int, rows: list[str]) -> None:
    """The maker's database as schema `version` left it, holding `rows` (INSERTs in its names)."""
    await maker.close(await maker.new())
    back = _BACK_TO_1 if version == 1 else _BACK_TO_2
    version_row = f"INSERT INTO schema_version (version, applied_at) VALUES ({version}, 0)"
    await run_sql(maker.url, [*back, version_row, *rows])


async def test_a_version_2_database_keeps_its_data_under_the_new_names(maker: StoreMaker) -> None:
    """A version-2 database opens at version 3: a job's retry_epoch is its attempt, a job event's
    too, the lease's epoch is its fence (the next grant is one higher), and no old name is left."""
    await _old_database(
        maker,
        2,
        [
            "INSERT INTO jobs (id, status, created_at, updated_at, provider, retry_epoch, callback_ref)"
            " VALUES ('old', 'FAILED', 1, 2, 'runpod', 2, 'ref-old')",
            "INSERT INTO job_events (job_id, dedupe_key, status, outcome, retry_epoch, at)"
            " VALUES ('old', 'retry:2', 'IN_QUEUE', 'applied', 2, 1.5)",
            "INSERT INTO leases (name, holder, epoch, expires_at) VALUES ('leader', 'gone', 7, 0)",
        ],
    )
    store = await maker.new()
    job = await store.get_job("old")
    assert job is not None
    assert (job.status, job.attempt, job.callback_ref, job.run_id) == (JobStatus.FAILED, 2, "ref-old", None)
    [event] = await table_rows(maker.url, "job_events")
    assert (event["attempt"], "retry_epoch" in event) == (2, False)
    assert "retry_epoch" not in (await table_rows(maker.url, "jobs"))[0]
    assert await store.acquire_lease(LEADER_LEASE, "new", 30) == 8
    assert [r["version"] for r in await table_rows(maker.url, "schema_version")] == [2, 3]
    retried = ev("old", JobStatus.IN_QUEUE, "retry:3", attempt=3)
    assert await store.apply_event(retried) is ApplyOutcome.APPLIED


async def test_a_version_1_database_gains_the_new_columns(maker: StoreMaker) -> None:
    """A database made before jobs.callback_ref, callbacks.note and jobs.last_callback existed gets
    them when opened."""
    await _old_database(maker, 1, [])
    store = await maker.new()
    await record(store, "kie", {}, b"{}", "a=\x00", accepted=True)
    await store.apply_event(
        ev("v1", JobStatus.IN_PROGRESS, "k", from_callback=True, provider="kie", callback_ref="r1")
    )
    job = await store.get_job("v1")
    assert job is not None
    assert job.callback_ref == "r1"
    assert job.last_callback is not None
    assert job.last_callback["provider"] == "kie"
    assert (await table_rows(maker.url, "callbacks"))[0]["note"].startswith("query:")


# -- the database's clock and the attempts of a job ----------------------------------------------


async def test_a_lease_runs_on_the_database_clock(maker: StoreMaker, monkeypatch: pytest.MonkeyPatch) -> None:
    """A lease granted while the process clock reads an hour early still runs its 30 s by the
    database's clock: another holder cannot take it, and it ends 30 s from the database's now."""
    a, b = await maker.new(), await maker.new()
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() - 3600)
    fence = await a.acquire_lease("clock", "a", 30)
    assert fence is not None
    monkeypatch.undo()
    assert await b.acquire_lease("clock", "b", 30) is None
    assert await a.renew_lease("clock", "a", fence, 30) is True
    [lease] = await table_rows(maker.url, "leases")
    assert lease["expires_at"] == pytest.approx(time.time() + 30, abs=5)


async def test_a_late_event_of_an_earlier_attempt_is_recorded_not_applied(maker: StoreMaker) -> None:
    """After a retry, a re-sent callback of the first attempt's worker run is stored, marked stale
    and changes nothing; the new run's events apply, and an older run's stay stale after it."""
    store = await maker.new()
    # Run ids as the worker makes them: the run's start in hex milliseconds, then random bits.
    first_run, second_run = "19a0b1c2d3e0a0a", "19a0b1c99990b0b"

    async def send(
        status: JobStatus, key: str, run_id: str | None = None, **kw: object
    ) -> ApplyOutcome | None:
        event = ev("r", status, f"webhook-id:{key}", run_id=run_id, from_callback=True, **kw)
        done = await store.record_and_apply("generic", {}, key.encode(), "", accepted=True, event=event)
        return done.outcome

    assert await send(JobStatus.IN_PROGRESS, "m1", first_run) is ApplyOutcome.CREATED
    assert (
        await send(JobStatus.FAILED, "m2", first_run, error={"code": "oom", "message": "x"})
        is ApplyOutcome.APPLIED
    )
    assert await store.apply_event(ev("r", JobStatus.IN_QUEUE, "retry:1", attempt=1)) is ApplyOutcome.APPLIED
    assert (
        await send(JobStatus.FAILED, "m2", first_run, error={"code": "oom", "message": "x"})
        is ApplyOutcome.STALE
    )
    job = await store.get_job("r")
    assert job is not None
    assert (job.status, job.error, job.run_attempt) == (JobStatus.IN_QUEUE, None, 0)
    assert await send(JobStatus.IN_PROGRESS, "n1", second_run) is ApplyOutcome.APPLIED
    assert await send(JobStatus.IN_PROGRESS, "m3", first_run) is ApplyOutcome.STALE
    assert await send(JobStatus.COMPLETED, "n2", second_run, output={"glb": "x"}) is ApplyOutcome.APPLIED
    job = await store.get_job("r")
    assert job is not None
    assert (job.status, job.output, job.run_id, job.run_attempt) == (
        JobStatus.COMPLETED,
        {"glb": "x"},
        second_run,
        1,
    )
    recorded = [(r["job_id"], r["outcome"]) for r in await table_rows(maker.url, "callbacks")]
    assert recorded == [
        ("r", "created"),
        ("r", "applied"),
        ("r", "stale"),  # the first run's re-sent FAILED, after the retry
        ("r", "applied"),
        ("r", "stale"),
        ("r", "applied"),
    ]
