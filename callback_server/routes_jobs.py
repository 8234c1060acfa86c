"""The job API: submit, read (with long-poll), stream changes (SSE), list, cancel."""

from __future__ import annotations

import asyncio
import copy
import json
import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import SplitResult, urlencode, urlsplit

from aiohttp import web
from aiohttp.typedefs import Handler

from callback_server.api_keys import client_label
from callback_server.auth import REF_PARAM, TOKEN_PARAM, job_secret, job_token, master_key, new_ref
from callback_server.payload import loads_json
from callback_server.reconciler import refresh_job, run_on_local_server
from callback_server.runtime import RUNTIME, Runtime, StoreNotReady, json_error, wait_for_change
from callback_server.store.base import Job, StatusEvent, storable_text
from callback_server.store.store import Store
from callback_server.task_id import as_task_id
from callback_server.upstream import UpstreamError, UpstreamNotFound
from orfeas_contract.errors import InvalidInput, StorageError
from orfeas_contract.outbound import resolve_public
from orfeas_contract.status import JobStatus

log = logging.getLogger("callback_server.jobs")

MAX_WAIT_S = 60.0
MAX_SUBMIT_BYTES = 1024 * 1024
MAX_LIST = 200
SSE_KEEPALIVE_S = 15.0
SSE_MAX_S = 3600.0
_SUBMIT_KEYS = frozenset({"input", "idempotency_key", "webhook"})


class BadRequest(Exception):
    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message, self.field = message, field


def _callback_url(runtime: Runtime, provider: str, ref: str) -> str | None:
    """Our /callbacks/{provider} URL for one job: its ref, and for RunPod's unsigned webhook the
    job's derived token (never CALLBACK_TOKEN itself; see callback_server/auth.py)."""
    s = runtime.settings
    if not s.public_url:
        return None
    params = {REF_PARAM: ref}
    master = master_key(s)
    if master is not None and provider != "orfeas":
        params[TOKEN_PARAM] = job_token(master, ref)
    return f"{s.public_url}/callbacks/{provider}?{urlencode(params)}"


def _split(url: str) -> SplitResult | None:
    """urlsplit, or None for a URL it cannot split (a malformed IPv6 literal)."""
    try:
        return urlsplit(url)
    except ValueError:
        return None


def _parse_submit(raw: bytes) -> tuple[dict[str, Any], str | None, str | None]:
    try:
        body = loads_json(raw)
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("the body is not JSON") from None
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    unknown = set(body) - _SUBMIT_KEYS
    if unknown:
        raise BadRequest(f"unknown field {sorted(unknown)[0]!r}", field=sorted(unknown)[0])
    job_input = body.get("input")
    if not isinstance(job_input, dict):
        raise BadRequest("input must be an object", field="input")
    key = body.get("idempotency_key")
    if key is not None and (not isinstance(key, str) or not 1 <= len(key) <= 200):
        raise BadRequest("idempotency_key must be a string of 1 to 200 characters", field="idempotency_key")
    webhook = body.get("webhook")
    if webhook is not None:
        parts = _split(webhook) if isinstance(webhook, str) and len(webhook) <= 2048 else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            raise BadRequest("webhook must be an http(s) URL", field="webhook")
    # Refused before anything goes upstream: a NUL (or a lone surrogate) cannot be stored in a
    # TEXT column, and a job submitted but not stored is one nobody tracks.
    for name, value in (("idempotency_key", key), ("webhook", webhook)):
        if value is not None and storable_text(value)[1]:
            raise BadRequest(f"{name} holds a NUL or a character that is not UTF-8", field=name)
    return job_input, key, webhook


def _worker_input(runtime: Runtime, job_input: dict[str, Any], ref: str) -> dict[str, Any]:
    """The input sent upstream: names our /callbacks/orfeas so the worker's signed events reach us,
    signed with the job's derived secret (never ORFEAS_WEBHOOK_SECRET itself)."""
    url = _callback_url(runtime, "orfeas", ref)
    if url is None or "webhook" in job_input:
        return job_input
    sent = copy.deepcopy(job_input)
    hook: dict[str, Any] = {"url": url}
    master = master_key(runtime.settings)
    if master is not None:
        hook["secret"] = job_secret(master, ref)
    sent["webhook"] = hook
    return sent


async def _check_webhook_target(runtime: Runtime, url: str, field: str) -> None:
    """The worker's address policy (orfeas_contract.netguard), at submit: a target that could never be
    delivered to is refused now, not after the job ran. Resolution runs in a thread."""
    if runtime.settings.allow_private_webhooks:
        return  # any address goes (tests, one-box setups): nothing to resolve now
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise BadRequest("not a valid URL", field=field) from None
    if parts.username is not None or parts.password is not None:
        raise BadRequest("credentials in the URL are not accepted", field=field)
    try:
        await asyncio.to_thread(
            resolve_public, host, port, field=field, allow_private=runtime.settings.allow_private_webhooks
        )
    except InvalidInput as exc:
        raise BadRequest(exc.message, field=field) from None


def _input_webhook_url(job_input: dict[str, Any]) -> str | None:
    hook = job_input.get("webhook")
    if isinstance(hook, dict):
        hook = hook.get("url")
    return hook if isinstance(hook, str) else None


def _scoped_key(label: str | None, key: str | None) -> str | None:
    """The idempotency key as stored: within the API key's label, so one client's key never finds
    (nor reveals) another client's job. Labels hold no ':' (callback_server/settings.py)."""
    if key is None or label is None:
        return key
    return f"{label}:{key}"


def _summary(job: Job) -> dict[str, Any]:
    return {"id": job.id, "status": job.status.value}


async def submit_job(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    try:
        async with asyncio.timeout(runtime.settings.body_timeout_s):  # a slow body holds no handler
            raw = await request.content.read(MAX_SUBMIT_BYTES + 1)
    except TimeoutError:
        return json_error(
            408, "invalid_input", f"the body did not arrive in {runtime.settings.body_timeout_s:g} s"
        )
    if len(raw) > MAX_SUBMIT_BYTES:
        return json_error(413, "invalid_input", f"the body is over {MAX_SUBMIT_BYTES} bytes")
    try:
        job_input, key, webhook = _parse_submit(raw)
        if webhook is not None:
            await _check_webhook_target(runtime, webhook, "webhook")
        inner = _input_webhook_url(job_input)
        inner_parts = _split(inner) if inner is not None else None
        if inner is not None and inner_parts is not None and inner_parts.scheme in ("http", "https"):
            await _check_webhook_target(runtime, inner, "input.webhook")
    except BadRequest as exc:
        return json_error(400, "invalid_input", exc.message, field=exc.field)
    if runtime.upstream is None:
        return json_error(503, "upstream_unavailable", "no RunPod endpoint is configured")
    store = await runtime.ready_store()
    key = _scoped_key(client_label(request), key)
    if key is not None:
        existing = await store.find_by_idempotency_key(key)
        if existing is not None and not existing.status.is_terminal:
            if existing.input == job_input and existing.client_webhook == webhook:
                return web.json_response(_summary(existing), status=200)
            # Keys are scoped to the API key: the job named is the caller's own.
            return json_error(
                409, "idempotency_conflict", "the key names a running job with other input", id=existing.id
            )
    ref = new_ref()
    try:
        answer = await runtime.upstream.submit(
            _worker_input(runtime, job_input, ref), _callback_url(runtime, "runpod", ref)
        )
    except UpstreamError as exc:
        return json_error(502, exc.code, exc.message)
    now = runtime.clock()
    job = Job(
        id=answer["id"],
        status=JobStatus.IN_QUEUE,
        created_at=now,
        updated_at=now,
        input=job_input,
        idempotency_key=key,
        client_webhook=webhook,
        deadline_at=now + runtime.settings.job_deadline_s,
        callback_ref=ref,
    )
    stored = await store.create_job(job)
    if stored.id != job.id:
        # Another replica won the race for this key: ours is a duplicate upstream.
        try:
            await runtime.upstream.cancel(job.id)
        except UpstreamError:
            log.warning("could not cancel a duplicate submission", extra={"job_id": job.id})
        return web.json_response(_summary(stored), status=200)
    log.info("job %s submitted", job.id, extra={"job_id": job.id, "client": client_label(request)})
    if runtime.upstream.local:
        runtime.spawn(run_on_local_server(runtime, job.id), f"local-run:{job.id}")
    return web.json_response(_summary(stored), status=201)


def _wait_seconds(request: web.Request) -> float:
    raw = request.query.get("wait")
    if raw is None:
        return 0.0
    try:
        value = float(raw)
    except ValueError:
        raise BadRequest("wait must be a number of seconds", field="wait") from None
    if not 0 <= value <= MAX_WAIT_S:
        raise BadRequest(f"wait must be within [0, {MAX_WAIT_S:g}]", field="wait")
    return value


def _not_found(job_id: str | None) -> web.Response:
    return json_error(404, "not_found", f"no job {job_id!r}", field="id")


class _NoSuchJob(Exception):
    """The path's id is not a task id, or names no stored job (answered 404 by `store_errors`)."""

    def __init__(self, raw: str) -> None:
        super().__init__(raw)
        self.raw = raw


async def _stored_job(request: web.Request) -> tuple[Runtime, Store, Job]:
    """The runtime, the ready store and the job the path's {id} names; _NoSuchJob when none."""
    runtime = request.app[RUNTIME]
    raw = request.match_info["id"]
    job_id = as_task_id(raw)
    if job_id is None:
        raise _NoSuchJob(raw)
    store = await runtime.ready_store()
    job = await store.get_job(job_id)
    if job is None:
        raise _NoSuchJob(job_id)
    return runtime, store, job


async def get_job(request: web.Request) -> web.Response:
    try:
        wait_s = _wait_seconds(request)
    except BadRequest as exc:
        return json_error(400, "invalid_input", exc.message, field=exc.field)
    runtime, store, job = await _stored_job(request)
    job_id = job.id
    await refresh_job(runtime, job)
    job = await store.get_job(job_id) or job
    if wait_s > 0 and not job.status.is_terminal:
        loop_deadline = runtime.clock() + wait_s
        since = job.updated_at
        while not runtime.stopping.is_set():
            remaining = loop_deadline - runtime.clock()
            if remaining <= 0:
                break
            await wait_for_change(runtime, store, job_id, since, remaining)
            job = await store.get_job(job_id) or job
            if job.updated_at > since:
                break
    return web.json_response(job.to_api())


def _sse(event: str, data: Mapping[str, Any], event_id: str) -> bytes:
    return f"id: {event_id}\nevent: {event}\ndata: {json.dumps(data, default=str)}\n\n".encode()


async def job_events(request: web.Request) -> web.StreamResponse:
    runtime, store, job = await _stored_job(request)
    job_id = job.id
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await response.prepare(request)
    ends_at = runtime.clock() + SSE_MAX_S
    while True:
        await response.write(_sse("job", job.to_api(), f"{job.updated_at:.6f}"))
        if job.status.is_terminal or runtime.clock() >= ends_at or runtime.stopping.is_set():
            break  # after shutdown began the client reconnects (EventSource does) to another replica
        since = job.updated_at
        while job.updated_at <= since and runtime.clock() < ends_at and not runtime.stopping.is_set():
            await wait_for_change(runtime, store, job_id, since, SSE_KEEPALIVE_S)
            job = await store.get_job(job_id) or job
            if job.updated_at <= since and not runtime.stopping.is_set():
                await response.write(b": keep-alive\n\n")
        if job.updated_at <= since:
            break  # shutdown began or the stream's hour ran out, with nothing new to send
    await response.write_eof()
    return response


async def list_jobs(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    raw = request.query.get("limit", "50")
    try:
        limit = int(raw)
    except ValueError:
        return json_error(400, "invalid_input", "limit must be an integer", field="limit")
    if not 1 <= limit <= MAX_LIST:
        return json_error(400, "invalid_input", f"limit must be within [1, {MAX_LIST}]", field="limit")
    store = await runtime.ready_store()
    jobs = await store.recent_jobs(limit)
    return web.json_response({"jobs": [job.to_api() for job in jobs]})


async def cancel_job(request: web.Request) -> web.Response:
    runtime, store, job = await _stored_job(request)
    job_id = job.id
    if job.status.is_terminal:
        return json_error(409, "job_terminal", f"the job is already {job.status.value}", id=job.id)
    if runtime.upstream is not None:
        try:
            await runtime.upstream.cancel(job_id)
        except UpstreamNotFound:
            pass  # RunPod forgot it; cancelling our record is all there is to do
        except UpstreamError as exc:
            return json_error(502, exc.code, exc.message)
    # One cancel per attempt: a job retried after a cancel can be cancelled again.
    key = f"cancel:{job.attempt}"
    await store.apply_event(StatusEvent(job_id, JobStatus.CANCELLED, dedupe_key=key, provider=job.provider))
    log.info("job %s cancelled", job_id, extra={"job_id": job_id, "client": client_label(request)})
    job = await store.get_job(job_id) or job
    return web.json_response(job.to_api())


async def retry_job(request: web.Request) -> web.Response:
    """RunPod /retry: the one way back from a terminal state, as the job's next attempt."""
    runtime, store, job = await _stored_job(request)
    job_id = job.id
    if job.status not in (JobStatus.FAILED, JobStatus.TIMED_OUT, JobStatus.CANCELLED):
        return json_error(409, "job_not_retryable", f"a {job.status.value} job cannot be retried", id=job.id)
    if runtime.upstream is None:
        return json_error(503, "upstream_unavailable", "no RunPod endpoint is configured")
    try:
        await runtime.upstream.retry(job_id)
    except UpstreamError as exc:
        return json_error(502, exc.code, exc.message)
    attempt = job.attempt + 1
    event = StatusEvent(
        job_id,
        JobStatus.IN_QUEUE,
        dedupe_key=f"retry:{attempt}",
        provider=job.provider,
        attempt=attempt,
        deadline_at=runtime.clock() + runtime.settings.job_deadline_s,  # the new attempt's own time
    )
    await store.apply_event(event)
    log.info("job %s retried", job_id, extra={"job_id": job_id, "client": client_label(request)})
    job = await store.get_job(job_id) or job
    return web.json_response(job.to_api())


@web.middleware
async def store_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every route: a store that is not open in time or fails answers 503, never a traceback."""
    try:
        return await handler(request)
    except _NoSuchJob as exc:
        return _not_found(exc.raw)
    except StoreNotReady as exc:
        return json_error(503, "store_unavailable", f"the store is not ready: {exc}")
    except StorageError as exc:
        log.error("store error: %s", exc)
        return json_error(503, "store_unavailable", "the store failed; retry later")


def add_job_routes(app: web.Application) -> None:
    app.router.add_get("/v1/jobs", list_jobs)
    app.router.add_post("/v1/jobs", submit_job)
    app.router.add_get("/v1/jobs/{id}", get_job)
    app.router.add_get("/v1/jobs/{id}/events", job_events)
    app.router.add_post("/v1/jobs/{id}/cancel", cancel_job)
    app.router.add_post("/v1/jobs/{id}/retry", retry_job)
