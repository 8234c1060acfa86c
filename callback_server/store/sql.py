"""The store's operations, written once for SQLite and PostgreSQL: every read and write of jobs,
callbacks, the client webhook outbox and leases as a plan (store/steps.py) that an adapter runs
in one transaction (store/sqlite.py, store/postgres.py). An adapter supplies only what differs
(its Dialect, how it takes a named lock, how it tells waiters that a job changed); the schema and
its migrations are store/schema.py.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, NamedTuple

from callback_server.store.base import (
    JOB_COLUMNS,
    LEADER_LEASE,
    TERMINAL_SQL,
    TIMED_OUT_ERROR,
    ApplyOutcome,
    Delivery,
    Job,
    StaleFence,
    StatusEvent,
    StoredCallback,
    callback_text,
    job_changes,
    job_from_row,
    job_params,
    json_text,
    merge_submitted,
    plan_event,
    scoped_to_attempt,
    timed_out_key,
)
from callback_server.store.outbox import QueuedDelivery, delivery_for
from callback_server.store.steps import (
    Changed,
    KeyLock,
    Plan,
    all_rows,
    count,
    execute,
    new_id,
    one_row,
    value,
)
from orfeas_contract.status import JobStatus

# -- callbacks ----------------------------------------------------------------------------------


class NewCallback(NamedTuple):
    """A callback's row as it will be inserted (built before the transaction; a tuple, made once
    per callback, is cheaper to build than a frozen dataclass)."""

    received_at: float
    provider: str
    headers: str  # JSON
    query: str
    body: bytes
    body_size: int
    accepted: bool
    note: str | None

    @classmethod
    def of(
        cls,
        provider: str,
        headers: dict[str, str],
        body: bytes,
        query: str,
        *,
        accepted: bool,
        body_size: int | None,
        note: str | None,
        max_body_bytes: int,
    ) -> NewCallback:
        """The body cut to `max_body_bytes` (its size kept); the query made storable (base.py)."""
        stored_query, stored_note = callback_text(query, note)
        return cls(
            time.time(),
            provider,
            json_text(headers),
            stored_query,
            bytes(body[:max_body_bytes]),
            len(body) if body_size is None else body_size,
            accepted,
            stored_note,
        )


_MARK_CALLBACK = "UPDATE callbacks SET job_id = $1, outcome = $2 WHERE id = $3"


def insert_callback(callback: NewCallback, job_id: str | None, outcome: str | None) -> Plan[int]:
    """Store the callback, already marked with its job and outcome when they are known."""
    callback_id = yield new_id(
        "INSERT INTO callbacks (received_at, provider, headers, query, body, body_size, accepted,"
        " job_id, outcome, note) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        callback.received_at,
        callback.provider,
        callback.headers,
        callback.query,
        callback.body,
        callback.body_size,
        callback.accepted,
        job_id,
        outcome,
        callback.note,
    )
    return int(callback_id)


def mark_callback(callback_id: int, job_id: str | None, outcome: str) -> Plan[None]:
    yield execute(_MARK_CALLBACK, job_id, outcome, callback_id)


def unapplied_callbacks(limit: int) -> Plan[list[StoredCallback]]:
    rows = yield all_rows(
        "SELECT id, provider, headers, body, query, accepted FROM callbacks WHERE outcome IS NULL"
        " ORDER BY id LIMIT $1",
        limit,
    )
    return [StoredCallback.from_row(r) for r in rows]


# -- jobs ---------------------------------------------------------------------------------------

_JOB_MARKS = ", ".join(f"${i + 1}" for i in range(len(JOB_COLUMNS)))
_INSERT_JOB = f"INSERT INTO jobs ({', '.join(JOB_COLUMNS)}) VALUES ({_JOB_MARKS}) ON CONFLICT (id) DO NOTHING"
_UPDATES: dict[tuple[str, ...], str] = {}  # one UPDATE text per set of changed columns (a few)


def _update_job(old: Job, new: Job) -> Plan[None]:
    """Write what changed from `old` (the locked row) to `new`, those columns only."""
    columns, params = job_changes(old, new)
    if not columns:
        return
    text = _UPDATES.get(columns)
    if text is None:
        text = (
            "UPDATE jobs SET "
            + ", ".join(f"{c} = ${i + 2}" for i, c in enumerate(columns))
            + " WHERE id = $1"
        )
        _UPDATES[columns] = text
    yield execute(text, new.id, *params)


def _locked_job(job_id: str) -> Plan[Job | None]:
    row = yield one_row("SELECT * FROM jobs WHERE id = $1 {for_update}", job_id)
    return job_from_row(row) if row is not None else None


def _queue(delivery: QueuedDelivery | None, now: float) -> Plan[None]:
    """Put a client webhook in the outbox, inside the caller's transaction (once per msg_id)."""
    if delivery is None:
        return
    yield execute(
        "INSERT INTO deliveries (job_id, url, body, msg_id, terminal, next_attempt_at, created_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (msg_id) DO NOTHING",
        delivery.job_id,
        delivery.url,
        delivery.body,
        delivery.msg_id,
        delivery.terminal,
        now,
        now,
    )


def apply_event(
    event: StatusEvent,
    now: float,
    *,
    callback: NewCallback | None = None,
    callback_id: int | None = None,
) -> Plan[tuple[ApplyOutcome, int | None]]:
    """Decide `event` against the job's locked row (`plan_event`) and store what it does, with the
    client webhook it queues; returns the outcome and the callback's id. `callback` is stored
    already marked with the outcome (one write, not two); `callback_id` names a stored one to mark.
    """
    outcome: ApplyOutcome
    new: Job | None
    job = yield from _locked_job(event.job_id)
    if job is None:
        outcome, new = plan_event(None, event, seen=False, now=now)
        assert new is not None
        inserted = yield count(_INSERT_JOB, *job_params(new))
        if not inserted:  # another transaction created it first (PostgreSQL): decide against it
            job = yield from _locked_job(event.job_id)
    if job is not None:
        event = scoped_to_attempt(event, job)
        seen = yield value(
            "SELECT 1 FROM job_events WHERE job_id = $1 AND dedupe_key = $2 AND outcome <> 'duplicate'",
            event.job_id,
            event.dedupe_key,
        )
        outcome, new = plan_event(job, event, seen=seen is not None, now=now)
        if new is not None:
            yield from _update_job(job, new)
            if outcome is ApplyOutcome.APPLIED:
                yield from _queue(delivery_for(new, event.dedupe_key, now), now)
    if callback is not None:
        callback_id = yield from insert_callback(callback, event.job_id, outcome.value)
    elif callback_id is not None:
        yield from mark_callback(callback_id, event.job_id, outcome.value)
    # A WRONG_JOB event keeps no job event: it would count as "seen" and turn the job's own
    # event with that dedupe key into a duplicate.
    if outcome is not ApplyOutcome.WRONG_JOB:
        yield execute(
            "INSERT INTO job_events (job_id, dedupe_key, status, outcome, attempt, callback_id, at)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7)",
            event.job_id,
            event.dedupe_key,
            event.status.value,
            outcome.value,
            event.attempt,
            callback_id,
            now,
        )
    if outcome in (ApplyOutcome.CREATED, ApplyOutcome.APPLIED):
        yield Changed(event.job_id)
    return outcome, callback_id


def create_job(job: Job) -> Plan[Job]:
    """Store a submitted job; the stored one is returned (see Store.create_job)."""
    existing = yield from _locked_job(job.id)
    if existing is None:
        if job.idempotency_key is not None:
            # Serialises submits that share a key, so only one of them creates a job.
            yield KeyLock(f"idempotency:{job.idempotency_key}")
            row = yield one_row(
                f"SELECT * FROM jobs WHERE idempotency_key = $1 AND status NOT IN {TERMINAL_SQL}"
                " ORDER BY created_at DESC LIMIT 1",
                job.idempotency_key,
            )
            if row is not None:
                return job_from_row(row)
        if (yield count(_INSERT_JOB, *job_params(job))) == 1:
            yield Changed(job.id)
            return job
        existing = yield from _locked_job(job.id)  # a callback created it meanwhile (PostgreSQL)
        assert existing is not None
    merged = merge_submitted(existing, job)
    if merged is None:
        return existing
    yield from _update_job(existing, merged)
    if merged.status.is_terminal and not existing.client_webhook:
        now = time.time()
        yield from _queue(delivery_for(merged, f"submitted:{merged.status.value}", now), now)
    return merged


def get_job(job_id: str) -> Plan[Job | None]:
    row = yield one_row("SELECT * FROM jobs WHERE id = $1", job_id)
    return job_from_row(row) if row is not None else None


def find_by_idempotency_key(key: str) -> Plan[Job | None]:
    row = yield one_row("SELECT * FROM jobs WHERE idempotency_key = $1 ORDER BY created_at DESC LIMIT 1", key)
    return job_from_row(row) if row is not None else None


def mark_upstream_checked(job_id: str, at: float, min_interval: float) -> Plan[bool]:
    changed = yield count(
        f"UPDATE jobs SET upstream_checked_at = $1 WHERE id = $2 AND status NOT IN {TERMINAL_SQL}"
        " AND (upstream_checked_at IS NULL OR upstream_checked_at <= $3)",
        at,
        job_id,
        at - min_interval,
    )
    return bool(changed == 1)


def stale_jobs(checked_before: float, created_after: float, limit: int) -> Plan[list[Job]]:
    rows = yield all_rows(
        f"SELECT * FROM jobs WHERE status NOT IN {TERMINAL_SQL} AND created_at > $1"
        " AND updated_at < $2 AND coalesce(upstream_checked_at, 0) < $2"
        " ORDER BY coalesce(upstream_checked_at, 0), updated_at LIMIT $3",
        created_after,
        checked_before,
        limit,
    )
    return [job_from_row(r) for r in rows]


def recent_jobs(limit: int) -> Plan[list[Job]]:
    rows = yield all_rows("SELECT * FROM jobs ORDER BY updated_at DESC LIMIT $1", limit)
    return [job_from_row(r) for r in rows]


def _check_fence(fence: int) -> Plan[None]:
    current = yield value(
        "SELECT fence = $2 AND expires_at > {now} FROM leases WHERE name = $1", LEADER_LEASE, fence
    )
    if not current:
        raise StaleFence(f"fence {fence} no longer holds the {LEADER_LEASE!r} lease")


def expire_jobs(now: float, fence: int) -> Plan[list[str]]:
    """Time out the jobs past their deadline (`now`: the leader's clock); leader only."""
    yield from _check_fence(fence)
    rows = yield all_rows(
        f"SELECT id, attempt FROM jobs WHERE status NOT IN {TERMINAL_SQL}"
        " AND deadline_at IS NOT NULL AND deadline_at <= $1 ORDER BY deadline_at",
        now,
    )
    expired = []
    for row in rows:
        event = StatusEvent(
            row["id"], JobStatus.TIMED_OUT, timed_out_key(row["attempt"]), error=TIMED_OUT_ERROR
        )
        outcome, _ = yield from apply_event(event, time.time())
        if outcome is ApplyOutcome.APPLIED:
            expired.append(row["id"])
    return expired


# -- client webhook outbox ----------------------------------------------------------------------


def _delivery(row: Mapping[str, Any]) -> Delivery:
    return Delivery(
        id=row["id"],
        job_id=row["job_id"],
        url=row["url"],
        body=bytes(row["body"]),
        msg_id=row["msg_id"],
        attempts=row["attempts"],
        terminal=bool(row["terminal"]),
        next_attempt_at=row["next_attempt_at"],
    )


def due_deliveries(now: float, limit: int) -> Plan[list[Delivery]]:
    rows = yield all_rows(
        "SELECT * FROM deliveries WHERE state = 'pending' AND next_attempt_at <= $1"
        " ORDER BY next_attempt_at, id LIMIT $2",
        now,
        limit,
    )
    return [_delivery(r) for r in rows]


def finish_delivery(delivery_id: int, ok: bool, next_attempt_at: float | None, fence: int) -> Plan[None]:
    """Delivered, to be tried again at `next_attempt_at`, or given up (None); leader only."""
    yield from _check_fence(fence)
    if ok:
        yield execute(
            "UPDATE deliveries SET state = 'delivered', attempts = attempts + 1, finished_at = $1"
            " WHERE id = $2 AND state = 'pending'",
            time.time(),
            delivery_id,
        )
    elif next_attempt_at is not None:
        yield execute(
            "UPDATE deliveries SET attempts = attempts + 1, next_attempt_at = $1"
            " WHERE id = $2 AND state = 'pending'",
            next_attempt_at,
            delivery_id,
        )
    else:
        yield execute(
            "UPDATE deliveries SET state = 'failed', attempts = attempts + 1, finished_at = $1"
            " WHERE id = $2 AND state = 'pending'",
            time.time(),
            delivery_id,
        )


# -- leases (the database's clock) --------------------------------------------------------------


def acquire_lease(name: str, holder: str, ttl: float) -> Plan[int | None]:
    # An expired, fence-0 row makes the first grant take the same path as every later one.
    yield execute(
        "INSERT INTO leases (name, holder, fence, expires_at) VALUES ($1, '', 0, 0)"
        " ON CONFLICT (name) DO NOTHING",
        name,
    )
    row = yield one_row(
        "SELECT holder, fence, expires_at, {now} AS now FROM leases WHERE name = $1 {for_update}", name
    )
    now = row["now"]
    if row["expires_at"] > now:
        if row["holder"] != holder:
            return None
        yield execute("UPDATE leases SET expires_at = $1 WHERE name = $2", now + ttl, name)
        return int(row["fence"])
    fence = int(row["fence"]) + 1
    yield execute(
        "UPDATE leases SET holder = $1, fence = $2, expires_at = $3 WHERE name = $4",
        holder,
        fence,
        now + ttl,
        name,
    )
    return fence


def renew_lease(name: str, holder: str, fence: int, ttl: float) -> Plan[bool]:
    changed = yield count(
        "UPDATE leases SET expires_at = {now} + $1"
        " WHERE name = $2 AND holder = $3 AND fence = $4 AND expires_at > {now}",
        ttl,
        name,
        holder,
        fence,
    )
    return bool(changed == 1)


def release_lease(name: str, holder: str, fence: int) -> Plan[None]:
    yield execute(
        "UPDATE leases SET expires_at = 0 WHERE name = $1 AND holder = $2 AND fence = $3", name, holder, fence
    )


def ping() -> Plan[bool]:
    one = yield value("SELECT 1")
    return bool(one == 1)
