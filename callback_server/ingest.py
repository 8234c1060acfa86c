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
import hashlib
import logging
from typing import NamedTuple

from callback_server.auth import authenticate, query_ref, redact_token
from callback_server.body import CappedBody
from callback_server.decoding import codings_of, decode_body, needs_thread
from callback_server.metrics import provider_label
from callback_server.payload import parse_body
from callback_server.runtime import Runtime
from callback_server.status_map import StatusUpdate, interpret, reported_word
from callback_server.store.base import ApplyOutcome, StatusEvent
from callback_server.task_id import extract_task_id
from orfeas_contract.status import JobStatus

log = logging.getLogger("callback_server.ingest")

# Outcomes stored for callbacks that change nothing.
REJECTED = "rejected"
NO_TASK_ID = "no_task_id"
NO_STATUS = "no_status"
OVERSIZE = "oversize"


class Decision(NamedTuple):
    accepted: bool
    event: StatusEvent | None
    job_id: str | None
    outcome: str | None  # set when there is no event
    note: str | None = None  # how the body was decoded, or why it could not be (stored with it)


class Arrival(NamedTuple):
    """A callback as it came (or as stored, for a replay): what `decide` reads."""

    provider: str
    headers: dict[str, str]
    body: CappedBody
    query: str  # as sent, percent-escapes kept
    wanted: dict[str, str]  # the headers `decide` reads, by lower-case name (`arrival` fills it)


_WANTED = frozenset({"content-type", "content-encoding", "webhook-id"})
_CUT = "body over the size cap or cut at the timeout: stored as far as it came"


def arrival(provider: str, headers: dict[str, str], body: CappedBody, query: str) -> Arrival:
    """An Arrival, with the headers `decide` reads picked out in one pass."""
    wanted = {}
    for key, value in headers.items():
        name = key.lower()
        if name in _WANTED:
            wanted[name] = value
    return Arrival(provider, headers, body, query, wanted)


def _dedupe_key(msg_id: str | None, body_sha256: str) -> str:
    if msg_id:
        return "webhook-id:" + msg_id[:200]
    return "sha256:" + body_sha256


def _decoded(body: CappedBody, encoding: str | None, limit: int) -> tuple[bytes | None, str | None, bool]:
    """The bytes to parse, the note to store and whether the body counts as over-size."""
    if body.truncated or body.timed_out:
        return None, _CUT, True
    if not encoding:  # nearly every callback: no Decoded to build
        return body.data, None, False
    decoded = decode_body(body.data, codings_of(encoding), limit)
    return decoded.data, decoded.note, decoded.truncated


def decide(runtime: Runtime, came: Arrival, authentic: bool | None = None) -> Decision:
    """What a callback does, from its parts alone (`authentic`: a verdict already given, for a
    stored callback whose token was redacted). Never raises; touches no shared state, so it may
    run on a worker thread (see `count` for its metrics)."""
    provider, headers, body, query, wanted = came
    if authentic is None:
        verdict = authenticate(runtime.settings, headers, query, body.data)
        authentic, ref = verdict.accepted, verdict.ref
        if not authentic:
            log.warning(
                "callback rejected (%s): %s", provider, verdict.reason, extra={"reason": verdict.reason}
            )
    else:
        ref = query_ref(query)  # a stored callback: bound to the ref its query names, as on arrival
    if not authentic:
        return Decision(False, None, None, REJECTED)
    data, note, oversize = _decoded(body, wanted.get("content-encoding"), runtime.settings.max_body_bytes)
    parsed = None if oversize or data is None else parse_body(data, wanted.get("content-type", ""))
    match = extract_task_id(provider, parsed, query, headers)
    if match is None:
        return Decision(True, None, None, OVERSIZE if oversize else NO_TASK_ID, note)
    update = interpret(provider, parsed, match.container)
    known = update is not None
    if update is None:  # named, state unknown: the job shows IN_PROGRESS, "reported, state unknown"
        update = StatusUpdate(JobStatus.IN_PROGRESS, word=reported_word(parsed, match.container))
    event = StatusEvent(
        match.task_id,
        update.status,
        _dedupe_key(wanted.get("webhook-id"), body.sha256),
        update.progress,
        update.output,
        update.error,
        provider,
        callback_ref=ref,
        from_callback=True,
        word=update.word,
        known=known,
        run_id=update.run_id,
    )
    return Decision(True, event, match.task_id, None, note)


def count(runtime: Runtime, decision: Decision) -> None:
    """The metrics of one decision (kept out of `decide`, which may run on a thread)."""
    if decision.outcome == REJECTED:
        runtime.metrics.inc("orfeas_callbacks_rejected_total")
    elif decision.job_id is None:
        runtime.metrics.inc("orfeas_callback_parse_misses_total")


async def decide_off_loop(runtime: Runtime, came: Arrival, authentic: bool | None = None) -> Decision:
    """`decide`, on a worker thread when the body is compressed or large (inflating and parsing
    8 MiB takes tens of milliseconds), else inline (a thread hand-off costs more than a small parse)."""
    if needs_thread(came.wanted.get("content-encoding", ""), came.body.data):
        decision = await asyncio.to_thread(decide, runtime, came, authentic)
    else:
        decision = decide(runtime, came, authentic)
    count(runtime, decision)
    return decision


def after_apply(runtime: Runtime, provider: str, decision: Decision, outcome: ApplyOutcome | None) -> None:
    label = outcome.value if outcome is not None else (decision.outcome or "recorded")
    runtime.metrics.inc("orfeas_callbacks_total", provider=provider_label(provider), outcome=label)
    event = decision.event
    if event is None:
        return
    if outcome is ApplyOutcome.WRONG_JOB:
        log.warning(
            "callback for job %s refused: its credentials are another job's",
            event.job_id,
            extra={"job_id": event.job_id, "provider": event.provider},
        )
    # DEBUG, not INFO: one line per callback was a sixth of a callback's CPU time under load
    # (about 70 of ~560 µs); the counts are in orfeas_callbacks_total.
    elif outcome in (ApplyOutcome.APPLIED, ApplyOutcome.CREATED) and log.isEnabledFor(logging.DEBUG):
        log.debug(
            "job %s → %s (%s)",
            event.job_id,
            event.status.value,
            label,
            extra={"job_id": event.job_id, "provider": event.provider},
        )


async def ingest(runtime: Runtime, came: Arrival) -> Decision:
    """Record the callback durably and apply it; returns once both are committed.

    `came.body` may be the first part of the body only (`truncated`); its `size` is the size received."""
    decision = await decide_off_loop(runtime, came)
    stored_headers, stored_query = redact_token(came.headers, came.query)
    store = runtime.store if runtime.store_ready.is_set() else await runtime.ready_store()
    recorded = await store.record_and_apply(
        came.provider,
        stored_headers,
        came.body.data,
        stored_query,
        accepted=decision.accepted,
        event=decision.event,
        job_id=decision.job_id,
        outcome=decision.outcome,
        body_size=came.body.size,
        note=decision.note,
    )
    after_apply(runtime, came.provider, decision, recorded.outcome)
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
            stored = CappedBody(body, len(body), hashlib.sha256(body).hexdigest(), False, True)
            came = arrival(provider, headers, stored, query)
            decision = await decide_off_loop(runtime, came, authentic=accepted)
            if decision.event is not None:
                outcome = await store.apply_event(decision.event, callback_id=callback_id)
                after_apply(runtime, provider, decision, outcome)
            else:
                await store.mark_callback(
                    callback_id, job_id=decision.job_id, outcome=decision.outcome or NO_STATUS
                )
            done += 1
        if len(rows) < batch:
            return done
