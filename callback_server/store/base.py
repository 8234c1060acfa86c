"""The store's records and rules, the same on SQLite (embedded) and PostgreSQL (replicas).

What a job, an event, a delivery and a stored callback are, and `plan_event`, the one rule book
for what an event does to a job. store/sql.py runs it inside the transaction that holds the
job's row (SQLite: the single writer; PostgreSQL: SELECT … FOR UPDATE); store/store.py is the API.

Two counters, two names: a job's `attempt` counts its runs after RunPod /retry (0 for the first);
a lease's `fence` is its fencing token, one higher for every new grant, which leader-only writes
carry so that a write of a deposed leader changes nothing (StaleFence).
"""

from __future__ import annotations

import dataclasses
import json
import operator
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from json.encoder import c_make_encoder, encode_basestring_ascii  # type: ignore[attr-defined]
from typing import Any, NamedTuple

from orfeas_contract.job_state import ApiJob, error_info
from orfeas_contract.status import JobStatus

#: The lease the callback server's leader holds; leader-only writes check their fence against it.
LEADER_LEASE = "leader"


class StaleFence(Exception):
    """A leader-only write came from an instance that is no longer the leader (its lease's fence
    is not the current, unexpired one)."""


class ApplyOutcome(StrEnum):
    CREATED = "created"  # the job was unknown; created in this state
    APPLIED = "applied"  # moved the job forward (or updated progress within IN_PROGRESS)
    DUPLICATE = "duplicate"  # same dedupe key seen before: recorded, not applied
    # Would move the job backwards or out of a terminal state, or reports an earlier attempt (a
    # lower `attempt`, or a worker run the job has moved past): not applied.
    STALE = "stale"
    # Authenticated for another job (its ref is not the job's): not applied, no job event kept.
    WRONG_JOB = "wrong_job"
    NOTED = "noted"  # a callback whose state could not be read: shown as the last callback only


#: The progress a job created by a callback whose state could not be read starts with.
STATE_UNKNOWN = {"message": "reported, state unknown"}


@dataclass(frozen=True)
class Job:
    id: str
    status: JobStatus
    created_at: float  # unix seconds
    updated_at: float
    progress: dict[str, Any] | None = None
    output: Any = None
    error: Any = None
    provider: str = "runpod"
    input: dict[str, Any] | None = None
    idempotency_key: str | None = None
    client_webhook: str | None = None
    attempt: int = 0  # RunPod /retry runs of this job after the first
    upstream_checked_at: float | None = None  # last RunPod /status call for this job
    deadline_at: float | None = None  # past it, a non-terminal job becomes TIMED_OUT
    # The reference its callback credentials are derived from (callback_server/auth.py).
    callback_ref: str | None = None
    # The last callback that named this job: {"provider", "at", "status"} (its own status word).
    last_callback: dict[str, Any] | None = None
    # The worker run whose events the job takes (the `attempt` id the worker's events carry), and
    # the job's attempt it was first seen in; see `plan_event`.
    run_id: str | None = None
    run_attempt: int | None = None

    def to_api(self) -> ApiJob:
        """The job-state document as the API shows it (orfeas_contract.job_state.ApiJob)."""
        return {
            "id": self.id,
            "status": self.status,
            "progress": self.progress,  # type: ignore[typeddict-item]  # stored as the callback sent it
            "output": self.output,
            # A row written before errors were documents may hold a string.
            "error": error_info(self.error),
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "last_callback": self.last_callback,  # type: ignore[typeddict-item]  # stored as written
        }


_JOB_FIELDS = frozenset(f.name for f in dataclasses.fields(Job))


def _replaced(job: Job, **changes: Any) -> Job:
    """`dataclasses.replace(job, **changes)` at a fraction of its cost (about 1 against 10 µs:
    replace runs __init__ again through keywords for all 20 fields); it runs once or twice for
    every event applied, on the writer thread. Job has no __post_init__ to run."""
    assert _JOB_FIELDS.issuperset(changes), sorted(changes)
    new: Job = object.__new__(Job)
    state = new.__dict__
    state.update(job.__dict__)
    state.update(changes)
    return new


@dataclass(frozen=True)
class StatusEvent:
    """A status change for one job, from a callback, an upstream poll or the reconciler."""

    job_id: str
    status: JobStatus
    dedupe_key: str  # webhook-id header, else sha256 of the body
    progress: dict[str, Any] | None = None
    output: Any = None
    error: Any = None
    provider: str = "runpod"
    attempt: int | None = None  # RunPod /retry: the one way back, with a higher attempt
    deadline_at: float | None = None  # with a higher attempt: the new attempt's deadline
    # A callback authenticated by one job's credentials: it may change only the job with this ref.
    callback_ref: str | None = None
    from_callback: bool = False  # a provider's callback: the job shows it as its last callback
    word: str | None = None  # the provider's own status word (callbacks only)
    known: bool = True  # False: the callback named the job but no readable state (NOTED)
    run_id: str | None = None  # the worker's id of the run that sent it (its events' `attempt`)


@dataclass(frozen=True)
class Delivery:
    """A client webhook to deliver (outbox row)."""

    id: int
    job_id: str
    url: str
    body: bytes
    msg_id: str  # webhook-id, stable across retries
    attempts: int
    terminal: bool  # only terminal events are retried
    next_attempt_at: float
    extra: dict[str, Any] = field(default_factory=dict)


class StoredCallback(NamedTuple):
    """A recorded callback as `unapplied_callbacks` reads it back; `accepted` is the authenticity
    verdict given when it arrived (its token is not stored, so it cannot be checked again)."""

    id: int
    provider: str
    headers: dict[str, str]
    body: bytes
    query: str
    accepted: bool

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> StoredCallback:
        """From a callbacks row (sqlite3.Row or asyncpg.Record)."""
        return cls(
            row["id"],
            row["provider"],
            json.loads(row["headers"]),
            bytes(row["body"]),
            row["query"],
            bool(row["accepted"]),
        )


@dataclass(frozen=True)
class RecordedCallback:
    """What `record_and_apply` did: the callback's row id and, when an event was given, its outcome."""

    callback_id: int
    outcome: ApplyOutcome | None


def plan_event(
    job: Job | None, event: StatusEvent, *, seen: bool, now: float
) -> tuple[ApplyOutcome, Job | None]:
    """Decide what `event` does to `job` (None: unknown); returns the outcome and the job to store.

    `seen` is True when the job already recorded an event with the same dedupe key. The second
    value is None when nothing changes. Rules, in order:
    - unknown job → CREATED in the event's state (another system may have submitted it), with
      the event's callback ref; an event whose state is not known creates it IN_PROGRESS with
      STATE_UNKNOWN as its progress;
    - an event bound to a ref (`callback_ref`) that is not the job's → WRONG_JOB (nothing changes,
      not even the last callback);
    - same dedupe key → DUPLICATE;
    - an event whose state is not known → NOTED (the state stays);
    - an attempt below the job's → STALE (an event of an earlier attempt);
    - an attempt above the job's → APPLIED whatever the state (RunPod /retry: the one way
      back); output and error of the earlier attempt are cleared unless the event brings its own,
      and the deadline is the event's when it names one (the new attempt gets its own time);
    - a worker run (`run_id`) the job has moved past → STALE (`run_is_stale`): a late or re-sent
      event of the run of an earlier attempt, or of an older run of this one; a newer run
      becomes the job's run when its event applies;
    - a forward move (JobStatus.can_move_to) → APPLIED;
    - IN_PROGRESS to IN_PROGRESS → APPLIED (a progress update);
    - anything else (backwards, out of a terminal state, a repeated IN_QUEUE) → STALE.
    `updated_at` always grows, even when two changes land within the clock's resolution.
    A callback's event (`from_callback`) also sets the job's `last_callback`, whatever the
    outcome: a DUPLICATE, STALE or NOTED one then returns the job with only that changed (and
    `updated_at` kept, so waiters are not woken by a change of state that did not happen).
    """
    last = {"provider": event.provider, "at": now, "status": event.word} if event.from_callback else None
    if job is None:
        created = Job(
            id=event.job_id,
            status=event.status if event.known else JobStatus.IN_PROGRESS,
            created_at=now,
            updated_at=now,
            progress=event.progress if event.known else dict(STATE_UNKNOWN),
            output=event.output,
            error=event.error,
            provider=event.provider,
            attempt=event.attempt or 0,
            last_callback=last,
            callback_ref=event.callback_ref,
            run_id=event.run_id,
            run_attempt=(event.attempt or 0) if event.run_id is not None else None,
        )
        return ApplyOutcome.CREATED, created
    if event.callback_ref is not None and event.callback_ref != job.callback_ref:
        return ApplyOutcome.WRONG_JOB, None
    outcome, new = _plan_known_job(job, event, seen=seen, now=now)
    if last is None:
        return outcome, new
    return outcome, _replaced(new or job, last_callback=last)


def _plan_known_job(
    job: Job, event: StatusEvent, *, seen: bool, now: float
) -> tuple[ApplyOutcome, Job | None]:
    if seen:
        return ApplyOutcome.DUPLICATE, None
    if not event.known:
        return ApplyOutcome.NOTED, None
    updated_at = max(now, job.updated_at + 1e-6)
    attempt = event.attempt
    if attempt is not None and attempt < job.attempt:
        return ApplyOutcome.STALE, None
    if attempt is not None and attempt > job.attempt:
        # The earlier attempt's run is kept (with its attempt): its late events stay stale.
        retried = _replaced(
            job,
            status=event.status,
            updated_at=updated_at,
            progress=event.progress,
            output=event.output,
            error=event.error,
            attempt=attempt,
            deadline_at=event.deadline_at if event.deadline_at is not None else job.deadline_at,
        )
        return ApplyOutcome.APPLIED, retried
    if event.run_id is not None:
        if run_is_stale(job, event.run_id):
            return ApplyOutcome.STALE, None
        job = _replaced(job, run_id=event.run_id, run_attempt=job.attempt)
    moves = job.status.can_move_to(event.status)
    progresses = job.status is JobStatus.IN_PROGRESS and event.status is JobStatus.IN_PROGRESS
    if not (moves or progresses):
        return ApplyOutcome.STALE, None
    applied = _replaced(
        job,
        status=event.status,
        updated_at=updated_at,
        progress=event.progress if event.progress is not None else job.progress,
        output=event.output if event.output is not None else job.output,
        error=event.error if event.error is not None else job.error,
    )
    return ApplyOutcome.APPLIED, applied


def _run_order(run_id: str) -> tuple[int, str]:
    # The worker's run ids start with the run's start in hex milliseconds (orfeas_worker/webhooks.py
    # new_attempt_id), so a later run sorts later; by length first, so "10" comes after "9".
    return len(run_id), run_id


def run_is_stale(job: Job, run_id: str) -> bool:
    """Whether an event of worker run `run_id` reports a run `job` has moved past.

    The job takes the events of one run at a time, the newest it has seen: an older run's are
    stale (RunPod ran the job again), and so are the events of the run it holds once the job was
    retried (`run_attempt` below `attempt`): the retry's own run starts later and sorts higher.
    A run sent no event before a retry leaves nothing to tell it by: its late events apply."""
    if job.run_id is None:
        return False
    if run_id == job.run_id:
        return job.run_attempt != job.attempt
    return _run_order(run_id) < _run_order(job.run_id)


def scoped_to_attempt(event: StatusEvent, job: Job | None) -> StatusEvent:
    """`event` with its dedupe key scoped to the job's current attempt (RunPod /retry).

    An attempt after a retry sends what the first one sent: the same webhook-id from a worker that
    names its messages by job, the same body from RunPod's own webhook. Deduplicated across
    attempts, the retried job's events would be dropped and it would stay IN_QUEUE until its
    deadline. Keys of the first attempt (0) are kept as they are; later ones get `@<attempt>`,
    which also gives the client webhook of each attempt its own message id."""
    if job is None or job.attempt == 0:
        return event
    return dataclasses.replace(event, dedupe_key=f"{event.dedupe_key}@{job.attempt}")


def merge_submitted(existing: Job, submitted: Job) -> Job | None:
    """`existing` with what a submission knows and the row lacks; None when nothing is missing.

    A callback (the worker's first progress event, a fast RunPod webhook) can create the job
    before the submitting request stores it: the row then has the job's state but not its input,
    idempotency key, client webhook or deadline. The stored state is kept; only empty fields are
    filled. A row created by a callback bound to another ref than the submission's was made with
    another job's credentials: the submission replaces it whole.
    """
    if existing.callback_ref is not None and existing.callback_ref != submitted.callback_ref:
        return dataclasses.replace(
            submitted, updated_at=max(submitted.updated_at, existing.updated_at + 1e-6)
        )
    merged = dataclasses.replace(
        existing,
        input=existing.input if existing.input is not None else submitted.input,
        idempotency_key=existing.idempotency_key or submitted.idempotency_key,
        client_webhook=existing.client_webhook or submitted.client_webhook,
        deadline_at=existing.deadline_at if existing.deadline_at is not None else submitted.deadline_at,
        callback_ref=existing.callback_ref or submitted.callback_ref,
    )
    return None if merged == existing else merged


#: The jobs table's columns, in the order `job_params` gives them.
JOB_COLUMNS = (
    "id",
    "status",
    "created_at",
    "updated_at",
    "progress",
    "output",
    "error",
    "provider",
    "input",
    "idempotency_key",
    "client_webhook",
    "attempt",
    "upstream_checked_at",
    "deadline_at",
    "callback_ref",
    "last_callback",
    "run_id",
    "run_attempt",
)
_JSON_COLUMNS = frozenset({"progress", "output", "error", "input", "last_callback"})
#: The terminal statuses as an SQL list, for `status NOT IN …`.
TERMINAL_SQL = "(" + ",".join(f"'{s.value}'" for s in JobStatus if s.is_terminal) + ")"
#: The error a job gets when the leader marks it TIMED_OUT past its deadline.
TIMED_OUT_ERROR = {"code": "timed_out", "message": "no final status arrived before the job's deadline"}
TIMED_OUT_DEDUPE_KEY = "deadline:timed-out"


def timed_out_key(attempt: int) -> str:
    """The dedupe key of the deadline's TIMED_OUT event: one per attempt, so a retried job that
    runs past its new deadline times out again."""
    return TIMED_OUT_DEDUPE_KEY if attempt == 0 else f"{TIMED_OUT_DEDUPE_KEY}:{attempt}"


# Built once: json.dumps with any keyword builds a new encoder on every call.
_ENCODER = json.JSONEncoder(separators=(",", ":"), default=str)
# And its C encoder, called directly: JSONEncoder.encode makes a new one on every call too (2.5
# of the 7 µs a job's last_callback took to encode). Same output (ASCII, compact, default=str);
# no cycle check (markers None): stored values come from parsed JSON or literal dicts, which
# cannot hold themselves.
_C_ENCODE = (
    c_make_encoder(None, str, encode_basestring_ascii, None, ":", ",", False, False, True)
    if c_make_encoder is not None
    else None
)


def json_text(value: Any) -> str:
    """`value` as compact JSON text (what the store writes in its JSON columns)."""
    if _C_ENCODE is None:
        return _ENCODER.encode(value)
    return "".join(_C_ENCODE(value, 0))


def storable_text(value: str) -> tuple[str, bool]:
    """`value` fit for a TEXT column on both stores, and whether it had to be escaped.

    PostgreSQL's TEXT cannot hold NUL, and neither store can encode a lone surrogate (a byte
    that was not UTF-8, kept by surrogateescape). Those characters are percent-encoded (`%00`,
    `%FF`), which is how a query string spells them anyway: parse_qsl reads the same values back.
    """
    if value.isascii() and "\x00" not in value:
        return value, False
    if "\x00" not in value:
        try:
            value.encode("utf-8")
            return value, False
        except UnicodeEncodeError:
            pass
    out = []
    for char in value:
        code = ord(char)
        if code == 0:
            out.append("%00")
        elif 0xDC80 <= code <= 0xDCFF:  # surrogateescape's stand-in for the byte code - 0xDC00
            out.append(f"%{code - 0xDC00:02X}")
        elif 0xD800 <= code <= 0xDFFF:
            out.append("%EF%BF%BD")  # any other lone surrogate: U+FFFD
        else:
            out.append(char)
    return "".join(out), True


def callback_text(query: str, note: str | None) -> tuple[str, str | None]:
    """A callback's query string as stored, and its note (saying so when the query was escaped)."""
    stored, escaped = storable_text(query)
    if escaped:
        said = "query: NUL or non-UTF-8 characters stored percent-encoded"
        note = said if not note else f"{note}; {said}"
    return stored, note


def dump_json(value: Any) -> str | None:
    """JSON text for a stored column; None stays NULL (`default=str` so odd values never fail a write)."""
    return None if value is None else json_text(value)


_JOB_VALUES = operator.attrgetter(*JOB_COLUMNS)
_JSON_AT = tuple(i for i, name in enumerate(JOB_COLUMNS) if name in _JSON_COLUMNS)
_STATUS_AT = JOB_COLUMNS.index("status")


def job_params(job: Job) -> tuple[Any, ...]:
    """The job's values in JOB_COLUMNS order, JSON columns as text (one attrgetter call and the
    five JSON columns by position: run for every job a callback writes)."""
    values = list(_JOB_VALUES(job))
    for i in _JSON_AT:
        if values[i] is not None:
            values[i] = json_text(values[i])
    values[_STATUS_AT] = values[_STATUS_AT].value
    return tuple(values)


def _param(i: int, value: Any) -> Any:
    """Column i's value as stored."""
    if value is None:
        return None
    if i in _JSON_AT:
        return json_text(value)
    return value.value if i == _STATUS_AT else value


def job_changes(old: Job, new: Job) -> tuple[tuple[str, ...], tuple[Any, ...]]:
    """The columns (after `id`) whose values differ between `old` and `new`, and `new`'s values
    for them as stored. An UPDATE that sets only these costs a third of one that sets every
    column (25 against 62 µs on SQLite: each assigned column's indexes are rewritten)."""
    before, after = _JOB_VALUES(old), _JOB_VALUES(new)
    changed = [i for i in range(1, len(JOB_COLUMNS)) if before[i] is not after[i] and before[i] != after[i]]
    return tuple(JOB_COLUMNS[i] for i in changed), tuple(_param(i, after[i]) for i in changed)


# Job's fields are the columns in the same order, so a row builds a Job by position.
assert tuple(f.name for f in dataclasses.fields(Job)) == JOB_COLUMNS
_STATUS_OF = {status.value: status for status in JobStatus}  # a dict look-up, not an Enum call


def job_from_row(row: Mapping[str, Any]) -> Job:
    """A Job from a jobs row (sqlite3.Row or asyncpg.Record): read for every event on a known job."""
    values = [row[name] for name in JOB_COLUMNS]
    for i in _JSON_AT:
        if values[i] is not None:
            values[i] = json.loads(values[i])
    status = values[_STATUS_AT]
    values[_STATUS_AT] = _STATUS_OF.get(status) or JobStatus(status)
    return Job(*values)
