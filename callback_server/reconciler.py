"""Bring jobs up to date from the RunPod endpoint; the leader's periodic reconciliation.

`refresh_job` is shared by GET /v1/jobs/{id} (a stale, non-terminal job) and the reconciler: it
marks the check first, so replicas and repeated requests call upstream at most once per
`refresh_s` per job, and a terminal job never causes a call. The reconciler (leader only) polls
stale jobs inside RunPod's 30-minute result window, expires jobs past their deadline and replays
callbacks that were recorded but never applied.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from typing import Any

from callback_server.ingest import replay_unapplied
from callback_server.runtime import Runtime
from callback_server.settings import RUNPOD_RESULT_WINDOW_S
from callback_server.status_map import interpret
from callback_server.store.base import ApplyOutcome, Job, StaleFence, StatusEvent
from callback_server.upstream import UpstreamError

log = logging.getLogger("callback_server.reconciler")

STALE_BATCH = 50


def needs_refresh(runtime: Runtime, job: Job, now: float) -> bool:
    """Only a non-terminal job whose row and last upstream check are both older than refresh_s."""
    s = runtime.settings
    if job.status.is_terminal or runtime.upstream is None or runtime.upstream.local:
        return False
    if job.created_at < now - RUNPOD_RESULT_WINDOW_S:
        return False
    if now - job.updated_at < s.refresh_s:
        return False
    return job.upstream_checked_at is None or now - job.upstream_checked_at >= s.refresh_s


def event_from_envelope(
    job_id: str, envelope: dict[str, Any], provider: str = "runpod"
) -> StatusEvent | None:
    update = interpret("runpod", envelope, envelope)
    if update is None:
        return None
    digest = hashlib.sha256(json.dumps(envelope, sort_keys=True, default=str).encode()).hexdigest()
    return StatusEvent(
        job_id=job_id,
        status=update.status,
        dedupe_key=f"upstream:{digest}",
        progress=update.progress,
        output=update.output,
        error=update.error,
        provider=provider,
    )


async def apply_envelope(runtime: Runtime, job_id: str, envelope: dict[str, Any]) -> ApplyOutcome | None:
    event = event_from_envelope(job_id, envelope)
    if event is None:
        return None
    outcome = await runtime.store.apply_event(event)
    if outcome in (ApplyOutcome.APPLIED, ApplyOutcome.CREATED):
        log.info("job %s → %s (upstream)", job_id, event.status.value, extra={"job_id": job_id})
    return outcome


async def _refresh(runtime: Runtime, job: Job) -> None:
    assert runtime.upstream is not None
    # The claim is atomic in the store: of the replicas (and requests) that find the job stale at
    # once, one calls upstream and the others answer from the row.
    claimed = await runtime.store.mark_upstream_checked(
        job.id, runtime.clock(), min_interval=runtime.settings.refresh_s
    )
    if not claimed:
        return
    try:
        envelope = await runtime.upstream.status(job.id)
    except UpstreamError as exc:
        log.warning("upstream status failed: %s", exc, extra={"job_id": job.id})
        return
    await apply_envelope(runtime, job.id, envelope)


async def refresh_job(runtime: Runtime, job: Job) -> None:
    """Refresh `job` from upstream if it needs it; one call in flight per job in this process."""
    if not needs_refresh(runtime, job, runtime.clock()):
        return
    task = runtime.refreshing.get(job.id)
    if task is None:
        task = asyncio.ensure_future(_refresh(runtime, job))
        runtime.refreshing[job.id] = task
        task.add_done_callback(lambda _t: runtime.refreshing.pop(job.id, None))
    # shield: a client that hangs up does not cancel the refresh other requests wait on.
    await asyncio.shield(task)


async def run_on_local_server(runtime: Runtime, job_id: str) -> None:
    """Local dev server: POST /status/{id} runs the job; store what it answers."""
    assert runtime.upstream is not None
    try:
        envelope = await runtime.upstream.status(job_id, timeout_s=runtime.settings.job_deadline_s)
    except UpstreamError as exc:
        log.warning("local run failed: %s", exc, extra={"job_id": job_id})
        return
    await apply_envelope(runtime, job_id, envelope)


async def reconcile_once(runtime: Runtime, fence: int) -> None:
    now = runtime.clock()
    store = runtime.store
    for job_id in await store.expire_jobs(now=now, fence=fence):
        log.info("job %s → TIMED_OUT (deadline)", job_id, extra={"job_id": job_id})
    if runtime.upstream is not None and not runtime.upstream.local:
        stale = await store.stale_jobs(
            checked_before=now - runtime.settings.refresh_s,
            created_after=now - RUNPOD_RESULT_WINDOW_S,
            limit=STALE_BATCH,
        )
        for job in stale:
            await refresh_job(runtime, job)


async def reconcile_forever(runtime: Runtime, fence: int) -> None:
    """The leader's loop; ends when cancelled (leadership lost, shutdown) or the fence is stale."""
    try:
        await replay_unapplied(runtime)
    except Exception:
        log.exception("replaying unapplied callbacks failed")
    while True:
        try:
            await reconcile_once(runtime, fence)
        except StaleFence:
            log.warning("fence %s is stale: the reconciler stops", fence)
            return
        except Exception:
            log.exception("reconciliation failed; trying again")
        await asyncio.sleep(runtime.settings.reconcile_s)
