"""From a callback's raw bytes to one durable write: record it and apply its status change.

Everything is decided in memory first (authenticity, body, task id, status) so each request is a
single `record_and_apply` transaction: what got a 200 is on disk, and the job's change with it
(and the client webhook that change queues, see store/outbox.py). A compressed or large body is
decoded and parsed on a worker thread (decoding.py), never on the event loop.

A callback that names a task always leaves it visible: when its state cannot be read, the event
is `known=False` (the job is created IN_PROGRESS, "reported, state unknown", or only shows it as
its last callback).
Callbacks recorded but never marked (a crash inside the store's write path) are replayed at start.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass

from callback_server.auth import authenticate, query_ref, redact_token
from callback_server.decoding import Decoded, codings_of, decode_body, needs_thread
from callback_server.metrics import provider_label
from callback_server.payload import parse_body
from callback_server.runtime import Runtime
from callback_server.status_map import interpret, reported_word
from callback_server.store.base import ApplyOutcome, StatusEvent
from callback_server.task_id import extract_task_id
from orfeas_contract.status import JobStatus

log = logging.getLogger("callback_server.ingest")

# Outcomes stored for callbacks that change nothing.
REJECTED = "rejected"
NO_TASK_ID = "no_task_id"
NO_STATUS = "no_status"
OVERSIZE = "oversize"


@dataclass(frozen=True)
class Decision:
    accepted: bool
    event: StatusEvent | None
    job_id: str | None
    outcome: str | None  # set when there is no event
    note: str | None = None  # how the body was decoded, or why it could not be (stored with it)


def _dedupe_key(msg_id: str | None, body_sha256: str) -> str:
    if msg_id:
        return "webhook-id:" + msg_id[:200]
    return "sha256:" + body_sha256


_WANTED = frozenset({"content-type", "content-encoding", "webhook-id"})


def _wanted_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The headers `decide` reads, by lower-case name, in one pass."""
    return {k: v for k, v in ((key.lower(), value) for key, value in headers.items()) if k in _WANTED}


def decide(
    runtime: Runtime,
    provider: str,
    headers: Mapping[str, str],
    body: bytes,
    query: str,
    *,
    body_sha256: str | None = None,
    truncated: bool = False,
    authentic: bool | None = None,
) -> Decision:
    """What a callback does, from its parts alone (`authentic`: a verdict already given, for a
    stored callback whose token was redacted). Never raises; touches no shared state, so it may
    run on a worker thread (see `count` for its metrics)."""
    digest = body_sha256 or hashlib.sha256(body).hexdigest()
    if authentic is None:
        verdict = authenticate(runtime.settings, headers, query, body)
        authentic, ref = verdict.accepted, verdict.ref
        if not authentic:
            log.warning(
                "callback rejected (%s): %s", provider, verdict.reason, extra={"reason": verdict.reason}
            )
    else:
        ref = query_ref(query)  # a stored callback: bound to the ref its query names, as on arrival
    if not authentic:
        return Decision(False, None, None, REJECTED)
    wanted = _wanted_headers(headers)
    content_type = wanted.get("content-type", "")
    encodings = codings_of(wanted.get("content-encoding", ""))
    if truncated:
        decoded = Decoded(
            None, "body over the size cap or cut at the timeout: stored as far as it came", True
        )
    else:
        decoded = decode_body(body, encodings, runtime.settings.max_body_bytes)
    oversize = truncated or decoded.truncated
    parsed = None if oversize or decoded.data is None else parse_body(decoded.data, content_type)
    match = extract_task_id(provider, parsed, query, headers)
    if match is None:
        return Decision(True, None, None, OVERSIZE if oversize else NO_TASK_ID, decoded.note)
    update = interpret(provider, parsed, match.container)
    key = _dedupe_key(wanted.get("webhook-id"), digest)
    if update is None:
        event = StatusEvent(
            job_id=match.task_id,
            status=JobStatus.IN_PROGRESS,
            dedupe_key=key,
            provider=provider,
            from_callback=True,
            word=reported_word(parsed, match.container),
            known=False,
            callback_ref=ref,
        )
    else:
        event = StatusEvent(
            job_id=match.task_id,
            status=update.status,
            dedupe_key=key,
            progress=update.progress,
            output=update.output,
            error=update.error,
            provider=provider,
            from_callback=True,
            word=update.word,
            callback_ref=ref,
            run_id=update.run_id,
        )
    return Decision(True, event, match.task_id, None, decoded.note)


def count(runtime: Runtime, decision: Decision) -> None:
    """The metrics of one decision (kept out of `decide`, which may run on a thread)."""
    if decision.outcome == REJECTED:
        runtime.metrics.inc("orfeas_callbacks_rejected_total")
    elif decision.job_id is None:
        runtime.metrics.inc("orfeas_callback_parse_misses_total")


async def decide_off_loop(
    runtime: Runtime,
    provider: str,
    headers: dict[str, str],
    body: bytes,
    query: str,
    *,
    body_sha256: str | None = None,
    truncated: bool = False,
    authentic: bool | None = None,
) -> Decision:
    """`decide`, on a worker thread when the body is compressed or large (inflating and parsing
    8 MiB takes tens of milliseconds), else inline (a thread hand-off costs more than a small parse)."""
    run = functools.partial(
        decide,
        runtime,
        provider,
        headers,
        body,
        query,
        body_sha256=body_sha256,
        truncated=truncated,
        authentic=authentic,
    )
    if needs_thread(_wanted_headers(headers).get("content-encoding", ""), body):
        decision = await asyncio.to_thread(run)
    else:
        decision = run()
    count(runtime, decision)
    return decision


async def after_apply(
    runtime: Runtime, provider: str, decision: Decision, outcome: ApplyOutcome | None
) -> None:
    label = outcome.value if outcome is not None else (decision.outcome or "recorded")
    runtime.metrics.inc("orfeas_callbacks_total", provider=provider_label(provider), outcome=label)
    event = decision.event
    if event is not None and outcome is ApplyOutcome.WRONG_JOB:
        log.warning(
            "callback for job %s refused: its credentials are another job's",
            event.job_id,
            extra={"job_id": event.job_id, "provider": event.provider},
        )
    # DEBUG, not INFO: one line per callback was a sixth of a callback's CPU time under load
    # (about 70 of ~560 µs); the counts are in orfeas_callbacks_total.
    if (
        event is not None
        and outcome in (ApplyOutcome.APPLIED, ApplyOutcome.CREATED)
        and log.isEnabledFor(logging.DEBUG)
    ):
        log.debug(
            "job %s → %s (%s)",
            event.job_id,
            event.status.value,
            label,
            extra={"job_id": event.job_id, "provider": event.provider},
        )


async def ingest(
    runtime: Runtime,
    provider: str,
    headers: dict[str, str],
    body: bytes,
    query: str,
    *,
    body_sha256: str | None = None,
    truncated: bool = False,
    body_size: int | None = None,
) -> Decision:
    """Record the callback durably and apply it; returns once both are committed.

    `body` may be the first part of the body only (`truncated`); `body_size` is the size received."""
    decision = await decide_off_loop(
        runtime, provider, headers, body, query, body_sha256=body_sha256, truncated=truncated
    )
    stored_headers, stored_query = redact_token(headers, query)
    store = await runtime.ready_store()
    recorded = await store.record_and_apply(
        provider,
        stored_headers,
        body,
        stored_query,
        accepted=decision.accepted,
        event=decision.event,
        job_id=decision.job_id,
        outcome=decision.outcome,
        body_size=body_size,
        note=decision.note,
    )
    await after_apply(runtime, provider, decision, recorded.outcome)
    return decision


async def replay_unapplied(runtime: Runtime, batch: int = 500) -> int:
    """Apply callbacks that were recorded but never marked; returns how many were replayed."""
    store = runtime.store
    done = 0
    while True:
        rows = await store.unapplied_callbacks(batch)
        if not rows:
            return done
        for callback_id, provider, headers, body, query, accepted in rows:
            decision = await decide_off_loop(runtime, provider, headers, body, query, authentic=accepted)
            if decision.event is not None:
                outcome = await store.apply_event(decision.event, callback_id=callback_id)
                await after_apply(runtime, provider, decision, outcome)
            else:
                await store.mark_callback(
                    callback_id, job_id=decision.job_id, outcome=decision.outcome or NO_STATUS
                )
            done += 1
        if len(rows) < batch:
            return done
