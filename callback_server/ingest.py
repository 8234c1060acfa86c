"""From a callback's raw bytes to one durable write: record it and apply its status change.

Everything is decided in memory first (authenticity, body, task id, status) so each request is a
single `record_and_apply` transaction: what got a 200 is on disk, and the job's change with it
(and the client webhook that change queues, see store/outbox.py).
Callbacks recorded but never marked (a crash inside the store's write path) are replayed at start.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass

from callback_server.auth import authenticate, query_ref, redact_token
from callback_server.metrics import provider_label
from callback_server.payload import parse_body
from callback_server.runtime import Runtime
from callback_server.status_map import interpret
from callback_server.store.base import ApplyOutcome, StatusEvent
from callback_server.task_id import extract_task_id

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


def dedupe_key(headers: Mapping[str, str], body_sha256: str) -> str:
    lowered = {k.lower(): v for k, v in headers.items()}
    msg_id = lowered.get("webhook-id")
    if msg_id:
        return "webhook-id:" + msg_id[:200]
    return "sha256:" + body_sha256


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
    stored callback whose token was redacted). Never raises."""
    metrics = runtime.metrics
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
        metrics.inc("orfeas_callbacks_rejected_total")
        return Decision(False, None, None, REJECTED)
    content_type = next((v for k, v in headers.items() if k.lower() == "content-type"), "")
    parsed = None if truncated else parse_body(body, content_type)
    match = extract_task_id(provider, parsed, query, headers)
    if match is None:
        metrics.inc("orfeas_callback_parse_misses_total")
        return Decision(True, None, None, OVERSIZE if truncated else NO_TASK_ID)
    update = interpret(provider, parsed, match.container)
    if update is None:
        return Decision(True, None, match.task_id, OVERSIZE if truncated else NO_STATUS)
    event = StatusEvent(
        job_id=match.task_id,
        status=update.status,
        dedupe_key=dedupe_key(headers, digest),
        progress=update.progress,
        output=update.output,
        error=update.error,
        provider=provider,
        callback_ref=ref,
    )
    return Decision(True, event, match.task_id, None)


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
    if event is not None and outcome in (ApplyOutcome.APPLIED, ApplyOutcome.CREATED):
        log.info(
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
) -> Decision:
    """Record the callback durably and apply it; returns once both are committed."""
    decision = decide(runtime, provider, headers, body, query, body_sha256=body_sha256, truncated=truncated)
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
            decision = decide(runtime, provider, headers, body, query, authentic=accepted)
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
