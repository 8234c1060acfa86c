"""The durable store's contract, kept by the SQLite (embedded) and PostgreSQL (replicas) stores.

Rules every implementation keeps:
- `record_callback` is durable (committed) when it returns: the server answers 200 only after it.
- `apply_event` changes a job only forward (JobStatus.can_move_to); a duplicate (same dedupe key)
  or stale event is recorded as such and changes nothing. Unknown job ids create the job.
- Leader-only writes pass the leader's `epoch`; a write with an epoch older than the lease's
  current one changes nothing (returns False / raises StaleEpoch).
- No method blocks the event loop.
- Errors of the database drivers are translated into `orfeas_contract.errors.StorageError` (field
  DATABASE_URL) where they enter; `StaleEpoch` is the one other error a method raises.

The rules of `apply_event` live once, in `plan_event` below, and both stores call it inside the
transaction that holds the job's row (SQLite: the single writer; PostgreSQL: SELECT … FOR UPDATE).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NamedTuple, Protocol

from orfeas_contract.job_state import ApiJob, error_info
from orfeas_contract.status import JobStatus

#: The lease the callback server's leader holds; leader-only writes check their epoch against it.
LEADER_LEASE = "leader"


class StaleEpoch(Exception):
    """A leader-only write came from an instance that is no longer the leader."""


class ApplyOutcome(StrEnum):
    CREATED = "created"  # the job was unknown; created in this state
    APPLIED = "applied"  # moved the job forward (or updated progress within IN_PROGRESS)
    DUPLICATE = "duplicate"  # same dedupe key seen before: recorded, not applied
    STALE = "stale"  # would move the job backwards or out of a terminal state: not applied
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
    retry_epoch: int = 0
    upstream_checked_at: float | None = None  # last RunPod /status call for this job
    deadline_at: float | None = None  # past it, a non-terminal job becomes TIMED_OUT
    # The reference its callback credentials are derived from (callback_server/auth.py).
    callback_ref: str | None = None
    # The last callback that named this job: {"provider", "at", "status"} (its own status word).
    last_callback: dict[str, Any] | None = None

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
    retry_epoch: int | None = None  # RunPod /retry: the one way back, with a higher epoch
    deadline_at: float | None = None  # with a higher retry epoch: the new attempt's deadline
    # A callback authenticated by one job's credentials: it may change only the job with this ref.
    callback_ref: str | None = None
    from_callback: bool = False  # a provider's callback: the job shows it as its last callback
    word: str | None = None  # the provider's own status word (callbacks only)
    known: bool = True  # False: the callback named the job but no readable state (NOTED)


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
    - a retry epoch below the job's → STALE (an event of an earlier attempt);
    - a retry epoch above the job's → APPLIED whatever the state (RunPod /retry: the one way
      back); output and error of the earlier attempt are cleared unless the event brings its own,
      and the deadline is the event's when it names one (the new attempt gets its own time);
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
            retry_epoch=event.retry_epoch or 0,
            last_callback=last,
            callback_ref=event.callback_ref,
        )
        return ApplyOutcome.CREATED, created
    if event.callback_ref is not None and event.callback_ref != job.callback_ref:
        return ApplyOutcome.WRONG_JOB, None
    outcome, new = _plan_known_job(job, event, seen=seen, now=now)
    if last is None:
        return outcome, new
    return outcome, dataclasses.replace(new or job, last_callback=last)


def _plan_known_job(
    job: Job, event: StatusEvent, *, seen: bool, now: float
) -> tuple[ApplyOutcome, Job | None]:
    if seen:
        return ApplyOutcome.DUPLICATE, None
    if not event.known:
        return ApplyOutcome.NOTED, None
    updated_at = max(now, job.updated_at + 1e-6)
    epoch = event.retry_epoch
    if epoch is not None and epoch < job.retry_epoch:
        return ApplyOutcome.STALE, None
    if epoch is not None and epoch > job.retry_epoch:
        retried = dataclasses.replace(
            job,
            status=event.status,
            updated_at=updated_at,
            progress=event.progress,
            output=event.output,
            error=event.error,
            retry_epoch=epoch,
            deadline_at=event.deadline_at if event.deadline_at is not None else job.deadline_at,
        )
        return ApplyOutcome.APPLIED, retried
    moves = job.status.can_move_to(event.status)
    progresses = job.status is JobStatus.IN_PROGRESS and event.status is JobStatus.IN_PROGRESS
    if not (moves or progresses):
        return ApplyOutcome.STALE, None
    applied = dataclasses.replace(
        job,
        status=event.status,
        updated_at=updated_at,
        progress=event.progress if event.progress is not None else job.progress,
        output=event.output if event.output is not None else job.output,
        error=event.error if event.error is not None else job.error,
    )
    return ApplyOutcome.APPLIED, applied


def scoped_to_attempt(event: StatusEvent, job: Job | None) -> StatusEvent:
    """`event` with its dedupe key scoped to the job's current attempt (RunPod /retry).

    An attempt after a retry sends what the first one sent: the same webhook-id from a worker that
    names its messages by job, the same body from RunPod's own webhook. Deduplicated across
    attempts, the retried job's events would be dropped and it would stay IN_QUEUE until its
    deadline. Keys of the first attempt (epoch 0) are kept as they are; later ones get `@<epoch>`,
    which also gives the client webhook of each attempt its own message id."""
    if job is None or job.retry_epoch == 0:
        return event
    return dataclasses.replace(event, dedupe_key=f"{event.dedupe_key}@{job.retry_epoch}")


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
    "retry_epoch",
    "upstream_checked_at",
    "deadline_at",
    "callback_ref",
    "last_callback",
)
_JSON_COLUMNS = frozenset({"progress", "output", "error", "input", "last_callback"})
#: The error a job gets when the leader marks it TIMED_OUT past its deadline.
TIMED_OUT_ERROR = {"code": "timed_out", "message": "no final status arrived before the job's deadline"}
TIMED_OUT_DEDUPE_KEY = "deadline:timed-out"


def timed_out_key(retry_epoch: int) -> str:
    """The dedupe key of the deadline's TIMED_OUT event: one per attempt, so a retried job that
    runs past its new deadline times out again."""
    return TIMED_OUT_DEDUPE_KEY if retry_epoch == 0 else f"{TIMED_OUT_DEDUPE_KEY}:{retry_epoch}"


# Built once: json.dumps with any keyword builds a new encoder on every call.
_ENCODER = json.JSONEncoder(separators=(",", ":"), default=str)


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
    return None if value is None else _ENCODER.encode(value)


def job_params(job: Job) -> tuple[Any, ...]:
    """The job's values in JOB_COLUMNS order, JSON columns as text."""
    values = []
    for name in JOB_COLUMNS:
        value = getattr(job, name)
        if name in _JSON_COLUMNS:
            value = dump_json(value)
        elif name == "status":
            value = value.value
        values.append(value)
    return tuple(values)


def job_from_row(row: Mapping[str, Any]) -> Job:
    """A Job from a jobs row (sqlite3.Row or asyncpg.Record)."""
    kwargs: dict[str, Any] = {}
    for name in JOB_COLUMNS:
        value = row[name]
        if name in _JSON_COLUMNS:
            value = None if value is None else json.loads(value)
        kwargs[name] = value
    kwargs["status"] = JobStatus(kwargs["status"])
    return Job(**kwargs)


class Store(Protocol):
    """What the app uses; SqliteStore and PostgresStore keep it (see the module docstring).

    Semantics beyond the signatures:
    - `record_callback` stores the body cut to the store's `max_body_bytes` and its full size
      (`body_size` when given: the size received, of which `body` may be only the first part);
      any query string and any bytes are taken: a query with NUL or non-UTF-8 characters is stored
      percent-encoded (`storable_text`) and the row's `note` says so, beside the caller's note.
    - `record_and_apply` records the callback and, in the same transaction, applies `event` (or,
      without one, marks the callback with `job_id`/`outcome`, e.g. "rejected", "no_task_id"):
      one durable write per request, and no crash window between record and apply.
    - `apply_event(..., callback_id=n)` also marks callback n with the job id and the outcome.
    - an APPLIED event on a job that names a client webhook queues that webhook's delivery
      (store/outbox.py) in the same transaction, so a crash cannot lose it.
    - `unapplied_callbacks` lists callbacks never marked (a crash between record and apply),
      oldest first, as StoredCallback rows (with the `accepted` verdict they were stored with).
    - `create_job` returns the stored job: the existing one when the id is known or when a
      non-terminal job already holds the same idempotency key (so a racing submit sees the winner).
      A known id that a callback created first gets the submission's missing fields
      (`merge_submitted`); if it is already terminal, its client webhook is queued then.
    - `mark_upstream_checked(id, at, min_interval=s)` claims the job's next upstream check: True
      (and the time stored) unless the job is terminal, unknown, or was checked less than `s`
      seconds before `at`, so replicas racing for one stale job call upstream once.
    - `find_by_idempotency_key` returns the newest job with that key, whatever its state.
    - `stale_jobs`: non-terminal jobs created after `created_after` whose row was neither updated
      nor checked upstream since `checked_before`, least recently checked first.
    - `expire_jobs` / `finish_delivery` raise StaleEpoch unless `epoch` is the current, unexpired
      epoch of the LEADER_LEASE lease.
    - `wait_for_change` returns once the job's `updated_at` is above `since` (at once if it
      already is), or after `wait_s`.
    - `acquire_lease` returns the holder's epoch, or None while another holder's lease runs; the
      epoch grows by one for every new grant (a new holder, or the same one after expiry).
      `renew_lease` is False once the lease expired or passed to another epoch. `release_lease`
      ends the lease at once (the epoch is kept, so the next grant is higher).
    """

    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def ping(self) -> bool: ...

    # Callbacks: raw, durable, before the 200.
    async def record_callback(
        self,
        provider: str,
        headers: dict[str, str],
        body: bytes,
        query: str,
        *,
        accepted: bool,
        body_size: int | None = None,
        note: str | None = None,
    ) -> int: ...
    async def record_and_apply(
        self,
        provider: str,
        headers: dict[str, str],
        body: bytes,
        query: str,
        *,
        accepted: bool,
        event: StatusEvent | None,
        job_id: str | None = None,
        outcome: str | None = None,
        body_size: int | None = None,
        note: str | None = None,
    ) -> RecordedCallback: ...
    async def mark_callback(self, callback_id: int, *, job_id: str | None, outcome: str) -> None: ...
    async def unapplied_callbacks(self, limit: int) -> list[StoredCallback]: ...

    # Jobs
    async def create_job(self, job: Job) -> Job: ...
    async def get_job(self, job_id: str) -> Job | None: ...
    async def find_by_idempotency_key(self, key: str) -> Job | None: ...
    async def apply_event(self, event: StatusEvent, *, callback_id: int | None = None) -> ApplyOutcome: ...
    async def mark_upstream_checked(self, job_id: str, at: float, *, min_interval: float = 0.0) -> bool: ...
    async def stale_jobs(self, *, checked_before: float, created_after: float, limit: int) -> list[Job]: ...
    async def expire_jobs(self, *, now: float, epoch: int) -> list[str]: ...
    async def recent_jobs(self, limit: int) -> list[Job]: ...

    # Change notification (long-poll, SSE): returns when job_id changed or wait_s passed.
    async def wait_for_change(self, job_id: str, since: float, wait_s: float) -> None: ...

    # Client webhook outbox
    async def due_deliveries(self, now: float, limit: int) -> list[Delivery]: ...
    async def finish_delivery(
        self, delivery_id: int, *, ok: bool, next_attempt_at: float | None, epoch: int
    ) -> None: ...

    # Leader lease: (name, holder, epoch, expires_at)
    async def acquire_lease(self, name: str, holder: str, ttl: float) -> int | None: ...
    async def renew_lease(self, name: str, holder: str, epoch: int, ttl: float) -> bool: ...
    async def release_lease(self, name: str, holder: str, epoch: int) -> None: ...

    async def __aenter__(self) -> Store: ...
    async def __aexit__(self, *exc: object) -> None: ...
