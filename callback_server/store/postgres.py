"""The replicas' store: PostgreSQL through an asyncpg pool.

- Every write is one transaction; `apply_event` locks the job's row (SELECT … FOR UPDATE) so
  concurrent events on one job, from any replica, are decided one after the other by `plan_event`.
- A change to a job sends NOTIFY on the `orfeas_jobs` channel inside its transaction (delivered
  at commit); each store LISTENs on a dedicated connection, outside the pool, and wakes its
  waiters. A waiter also polls every `poll_s` seconds, so a lost listener only slows wake-ups,
  and a background task connects the listener again (with backoff) when it drops.
- Lease times come from the database's clock (`clock_timestamp()`), so replicas with skewed
  clocks still agree on who holds the lease.
- asyncpg is imported by this module only: `open_store` loads it for postgresql:// URLs alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Iterable, Iterator

import asyncpg

from callback_server.settings import DATABASE_URL
from callback_server.store.base import (
    JOB_COLUMNS,
    LEADER_LEASE,
    TIMED_OUT_ERROR,
    ApplyOutcome,
    Delivery,
    Job,
    RecordedCallback,
    StaleEpoch,
    StatusEvent,
    StoredCallback,
    callback_text,
    job_from_row,
    job_params,
    merge_submitted,
    plan_event,
    scoped_to_attempt,
    timed_out_key,
)
from callback_server.store.outbox import QueuedDelivery, delivery_for
from orfeas_contract.errors import StorageError
from orfeas_contract.status import JobStatus

# 2: jobs.callback_ref, callbacks.note, jobs.last_callback (added to a version-1 database when it
# is opened).
SCHEMA_VERSION = 2
log = logging.getLogger("callback_server.store")

CHANNEL = "orfeas_jobs"
# Reconnecting the listener: first after half a second, then backing off to once every 30 s.
LISTEN_RETRY_MIN_S = 0.5
LISTEN_RETRY_MAX_S = 30.0
_TERMINAL_SQL = "(" + ",".join(f"'{s.value}'" for s in JobStatus if s.is_terminal) + ")"
_NOW = "extract(epoch FROM clock_timestamp())::float8"
# Any fixed number: replicas starting together create the schema one at a time under this lock.
_SCHEMA_LOCK = 0x0F1EA5

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS schema_version (
    version INTEGER PRIMARY KEY,
    applied_at DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS callbacks (
    id BIGSERIAL PRIMARY KEY,
    received_at DOUBLE PRECISION NOT NULL,
    provider TEXT NOT NULL,
    headers TEXT NOT NULL,
    query TEXT NOT NULL,
    body BYTEA NOT NULL,
    body_size BIGINT NOT NULL,
    accepted BOOLEAN NOT NULL,
    job_id TEXT,
    outcome TEXT,
    note TEXT
);
ALTER TABLE callbacks ADD COLUMN IF NOT EXISTS note TEXT;
CREATE INDEX IF NOT EXISTS callbacks_unmarked ON callbacks (id) WHERE outcome IS NULL;
CREATE INDEX IF NOT EXISTS callbacks_job ON callbacks (job_id);
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    progress TEXT,
    output TEXT,
    error TEXT,
    provider TEXT NOT NULL,
    input TEXT,
    idempotency_key TEXT,
    client_webhook TEXT,
    retry_epoch INTEGER NOT NULL DEFAULT 0,
    upstream_checked_at DOUBLE PRECISION,
    deadline_at DOUBLE PRECISION,
    callback_ref TEXT,
    last_callback TEXT
);
ALTER TABLE jobs ADD COLUMN IF NOT EXISTS callback_ref TEXT;
ALTER TABLE jobs ADD COLUMN IF NOT EXISTS last_callback TEXT;
CREATE INDEX IF NOT EXISTS jobs_idempotency ON jobs (idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS jobs_open ON jobs (updated_at) WHERE status NOT IN {_TERMINAL_SQL};
CREATE INDEX IF NOT EXISTS jobs_recent ON jobs (updated_at);
CREATE TABLE IF NOT EXISTS job_events (
    id BIGSERIAL PRIMARY KEY,
    job_id TEXT NOT NULL,
    dedupe_key TEXT NOT NULL,
    status TEXT NOT NULL,
    outcome TEXT NOT NULL,
    retry_epoch INTEGER,
    callback_id BIGINT,
    at DOUBLE PRECISION NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS job_events_dedupe ON job_events (job_id, dedupe_key)
    WHERE outcome <> 'duplicate';
CREATE TABLE IF NOT EXISTS deliveries (
    id BIGSERIAL PRIMARY KEY,
    job_id TEXT NOT NULL,
    url TEXT NOT NULL,
    body BYTEA NOT NULL,
    msg_id TEXT NOT NULL UNIQUE,
    attempts INTEGER NOT NULL DEFAULT 0,
    terminal BOOLEAN NOT NULL,
    next_attempt_at DOUBLE PRECISION NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    created_at DOUBLE PRECISION NOT NULL,
    finished_at DOUBLE PRECISION
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (next_attempt_at) WHERE state = 'pending';
CREATE TABLE IF NOT EXISTS leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    epoch BIGINT NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL
);
"""

_JOB_MARKS = ", ".join(f"${i + 1}" for i in range(len(JOB_COLUMNS)))
_JOB_INSERT = f"INSERT INTO jobs ({', '.join(JOB_COLUMNS)}) VALUES ({_JOB_MARKS})"
_JOB_UPDATE = (
    "UPDATE jobs SET "
    + ", ".join(f"{c} = ${i + 2}" for i, c in enumerate(JOB_COLUMNS[1:]))
    + " WHERE id = $1"
)


def _storage_error(exc: BaseException) -> StorageError:
    return StorageError(f"postgresql: {exc}", field=DATABASE_URL)


@contextlib.contextmanager
def _translated() -> Iterator[None]:
    """Driver and network errors become StorageError where they enter; StaleEpoch passes through."""
    try:
        yield
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
        raise _storage_error(exc) from exc


async def _lease_is_current(conn: asyncpg.Connection, epoch: int) -> bool:
    return bool(
        await conn.fetchval(
            f"SELECT epoch = $2 AND expires_at > {_NOW} FROM leases WHERE name = $1", LEADER_LEASE, epoch
        )
    )


async def _locked_job(conn: asyncpg.Connection, job_id: str) -> Job | None:
    row = await conn.fetchrow("SELECT * FROM jobs WHERE id = $1 FOR UPDATE", job_id)
    return job_from_row(row) if row is not None else None


async def _apply(
    conn: asyncpg.Connection, event: StatusEvent, callback_id: int | None, now: float
) -> ApplyOutcome:
    """Decide and store one event inside the caller's transaction (the job's row stays locked)."""
    job = await _locked_job(conn, event.job_id)
    outcome: ApplyOutcome
    new: Job | None
    if job is None:
        outcome, new = plan_event(None, event, seen=False, now=now)
        assert new is not None
        inserted = await conn.fetchval(
            _JOB_INSERT + " ON CONFLICT (id) DO NOTHING RETURNING 1", *job_params(new)
        )
        if inserted is None:  # another transaction created it first: decide against its row
            job = await _locked_job(conn, event.job_id)
    if job is not None:
        event = scoped_to_attempt(event, job)
        seen = await conn.fetchval(
            "SELECT 1 FROM job_events WHERE job_id = $1 AND dedupe_key = $2 AND outcome <> 'duplicate'",
            event.job_id,
            event.dedupe_key,
        )
        outcome, new = plan_event(job, event, seen=seen is not None, now=now)
        if new is not None:
            await conn.execute(_JOB_UPDATE, *job_params(new))
            if outcome is ApplyOutcome.APPLIED:
                await _queue(conn, delivery_for(new, event.dedupe_key, now), now)
    # A WRONG_JOB event keeps no job event: it would count as "seen" and turn the job's own
    # event with that dedupe key into a duplicate.
    if outcome is not ApplyOutcome.WRONG_JOB:
        await conn.execute(
            "INSERT INTO job_events (job_id, dedupe_key, status, outcome, retry_epoch, callback_id, at)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7)",
            event.job_id,
            event.dedupe_key,
            event.status.value,
            outcome.value,
            event.retry_epoch,
            callback_id,
            now,
        )
    if callback_id is not None:
        await conn.execute(
            "UPDATE callbacks SET job_id = $1, outcome = $2 WHERE id = $3",
            event.job_id,
            outcome.value,
            callback_id,
        )
    if outcome in (ApplyOutcome.CREATED, ApplyOutcome.APPLIED):
        await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, event.job_id)
    return outcome


async def _queue(conn: asyncpg.Connection, delivery: QueuedDelivery | None, now: float) -> None:
    """Put a client webhook in the outbox, inside the caller's transaction (once per msg_id)."""
    if delivery is None:
        return
    await conn.execute(
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


def _delivery(row: asyncpg.Record) -> Delivery:
    return Delivery(
        id=row["id"],
        job_id=row["job_id"],
        url=row["url"],
        body=bytes(row["body"]),
        msg_id=row["msg_id"],
        attempts=row["attempts"],
        terminal=row["terminal"],
        next_attempt_at=row["next_attempt_at"],
    )


class PostgresStore:
    """The Store protocol on PostgreSQL (see the module docstring)."""

    def __init__(
        self,
        dsn: str,
        *,
        max_body_bytes: int = 8 * 1024 * 1024,
        min_size: int = 1,
        max_size: int = 10,
        poll_s: float = 1.0,
        connect_timeout: float = 10.0,
    ) -> None:
        self.dsn = dsn
        self.max_body_bytes = max_body_bytes
        self._min_size = min_size
        self._max_size = max_size
        self._poll_s = poll_s
        self._connect_timeout = connect_timeout
        self._pool: asyncpg.Pool | None = None
        self._listener: asyncpg.Connection | None = None
        self._listening: asyncio.Task[None] | None = None
        self._waiters: dict[str, set[asyncio.Event]] = {}

    # -- life cycle -------------------------------------------------------------------------------

    async def open(self) -> None:
        if self._pool is not None:
            return
        try:
            pool = await asyncpg.create_pool(
                self.dsn, min_size=self._min_size, max_size=self._max_size, timeout=self._connect_timeout
            )
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, ValueError, TimeoutError) as exc:
            raise StorageError(f"cannot connect to postgresql: {exc}", field=DATABASE_URL) from exc
        try:
            with _translated():
                async with pool.acquire() as conn, conn.transaction():
                    await conn.execute("SELECT pg_advisory_xact_lock($1)", _SCHEMA_LOCK)
                    await conn.execute(_SCHEMA)
                    newest = await conn.fetchval("SELECT max(version) FROM schema_version")
                    if newest is not None and newest > SCHEMA_VERSION:
                        raise StorageError(
                            f"schema version {newest} is newer than this program's {SCHEMA_VERSION}",
                            field=DATABASE_URL,
                        )
                    await conn.execute(
                        "INSERT INTO schema_version (version, applied_at) VALUES ($1, $2)"
                        " ON CONFLICT DO NOTHING",
                        SCHEMA_VERSION,
                        time.time(),
                    )
        except BaseException:
            await pool.close()
            raise
        self._pool = pool
        lost = asyncio.Event()
        listening = await self._listen(lost)
        self._listening = asyncio.create_task(self._keep_listening(lost if listening else None))

    async def _listen(self, lost: asyncio.Event) -> bool:
        """LISTEN on its own connection (a pooled one would be reset on release); `lost` is set
        when that connection ends. False when it cannot be made now."""
        try:
            conn = await asyncpg.connect(self.dsn, timeout=self._connect_timeout)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError):
            return False
        try:
            conn.add_termination_listener(lambda _conn: lost.set())
            await conn.add_listener(CHANNEL, self._on_notify)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError):
            with contextlib.suppress(Exception):
                await conn.close(timeout=5)
            return False
        self._listener = conn
        return True

    async def _keep_listening(self, lost: asyncio.Event | None) -> None:
        """While the store is open, connect the listener again whenever it ends (a server restart,
        a failover, an idle-connection reaper), waiting 0.5 s, then twice as long after each
        failure up to 30 s. Waiters poll meanwhile, and all are woken once it is back: a change
        may have been committed while nobody listened."""
        delay = LISTEN_RETRY_MIN_S
        while self._pool is not None:
            if lost is not None:
                await lost.wait()
                self._listener = None
                if self._pool is None:
                    return
                log.warning("the PostgreSQL listener connection ended; connecting again")
            await asyncio.sleep(delay)
            lost = asyncio.Event()
            if await self._listen(lost):
                delay = LISTEN_RETRY_MIN_S
                self._notify(list(self._waiters))
            else:
                lost = None
                delay = min(delay * 2, LISTEN_RETRY_MAX_S)

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        self._notify([payload])

    async def close(self) -> None:
        pool, listener, listening = self._pool, self._listener, self._listening
        self._pool = self._listener = self._listening = None
        if listening is not None:
            listening.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listening
        if listener is not None:
            with contextlib.suppress(Exception):
                await listener.close(timeout=5)
        if pool is not None:
            await pool.close()
        for events in self._waiters.values():
            for event in events:
                event.set()

    async def __aenter__(self) -> PostgresStore:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- plumbing ---------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _conn(self, *, transaction: bool = False) -> AsyncIterator[asyncpg.Connection]:
        if self._pool is None:
            raise StorageError("the store is not open", field=DATABASE_URL)
        with _translated():
            async with self._pool.acquire() as conn:
                if transaction:
                    async with conn.transaction():
                        yield conn
                else:
                    yield conn

    def _notify(self, job_ids: Iterable[str]) -> None:
        for job_id in job_ids:
            for event in self._waiters.get(job_id, ()):
                event.set()

    async def ping(self) -> bool:
        try:
            async with self._conn() as conn:
                one: int = await conn.fetchval("SELECT 1")
                return one == 1
        except StorageError:
            return False

    # -- callbacks --------------------------------------------------------------------------------

    async def _insert_callback(
        self,
        conn: asyncpg.Connection,
        provider: str,
        headers: dict[str, str],
        body: bytes,
        query: str,
        accepted: bool,
        body_size: int | None = None,
        note: str | None = None,
    ) -> int:
        query, note = callback_text(query, note)
        callback_id: int = await conn.fetchval(
            "INSERT INTO callbacks (received_at, provider, headers, query, body, body_size, accepted, note)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
            time.time(),
            provider,
            json.dumps(headers),
            query,
            bytes(body[: self.max_body_bytes]),
            len(body) if body_size is None else body_size,
            accepted,
            note,
        )
        return callback_id

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
    ) -> int:
        async with self._conn() as conn:
            return await self._insert_callback(
                conn, provider, headers, body, query, accepted, body_size, note
            )

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
    ) -> RecordedCallback:
        async with self._conn(transaction=True) as conn:
            callback_id = await self._insert_callback(
                conn, provider, headers, body, query, accepted, body_size, note
            )
            if event is not None:
                return RecordedCallback(callback_id, await _apply(conn, event, callback_id, time.time()))
            if outcome is not None:
                await conn.execute(
                    "UPDATE callbacks SET job_id = $1, outcome = $2 WHERE id = $3",
                    job_id,
                    outcome,
                    callback_id,
                )
            return RecordedCallback(callback_id, None)

    async def mark_callback(self, callback_id: int, *, job_id: str | None, outcome: str) -> None:
        async with self._conn() as conn:
            await conn.execute(
                "UPDATE callbacks SET job_id = $1, outcome = $2 WHERE id = $3", job_id, outcome, callback_id
            )

    async def unapplied_callbacks(self, limit: int) -> list[StoredCallback]:
        async with self._conn() as conn:
            rows = await conn.fetch(
                "SELECT id, provider, headers, body, query, accepted FROM callbacks WHERE outcome IS NULL"
                " ORDER BY id LIMIT $1",
                limit,
            )
        return [StoredCallback.from_row(r) for r in rows]

    # -- jobs -------------------------------------------------------------------------------------

    async def create_job(self, job: Job) -> Job:
        async with self._conn(transaction=True) as conn:
            if job.idempotency_key is not None:
                # Serialises submits that share a key, so only one of them creates a job.
                await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", job.idempotency_key)
                row = await conn.fetchrow(
                    f"SELECT * FROM jobs WHERE idempotency_key = $1 AND status NOT IN {_TERMINAL_SQL}"
                    " AND id <> $2 ORDER BY created_at DESC LIMIT 1",
                    job.idempotency_key,
                    job.id,
                )
                if (
                    row is not None
                    and await conn.fetchval("SELECT 1 FROM jobs WHERE id = $1", job.id) is None
                ):
                    return job_from_row(row)
            inserted = await conn.fetchval(
                _JOB_INSERT + " ON CONFLICT (id) DO NOTHING RETURNING 1", *job_params(job)
            )
            if inserted is None:
                existing = await _locked_job(conn, job.id)
                assert existing is not None
                merged = merge_submitted(existing, job)
                if merged is None:
                    return existing
                await conn.execute(_JOB_UPDATE, *job_params(merged))
                if merged.status.is_terminal and not existing.client_webhook:
                    now = time.time()
                    await _queue(conn, delivery_for(merged, f"submitted:{merged.status.value}", now), now)
                return merged
            await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, job.id)
        return job

    async def get_job(self, job_id: str) -> Job | None:
        async with self._conn() as conn:
            row = await conn.fetchrow("SELECT * FROM jobs WHERE id = $1", job_id)
        return job_from_row(row) if row is not None else None

    async def find_by_idempotency_key(self, key: str) -> Job | None:
        async with self._conn() as conn:
            row = await conn.fetchrow(
                "SELECT * FROM jobs WHERE idempotency_key = $1 ORDER BY created_at DESC LIMIT 1", key
            )
        return job_from_row(row) if row is not None else None

    async def apply_event(self, event: StatusEvent, *, callback_id: int | None = None) -> ApplyOutcome:
        async with self._conn(transaction=True) as conn:
            return await _apply(conn, event, callback_id, time.time())

    async def mark_upstream_checked(self, job_id: str, at: float, *, min_interval: float = 0.0) -> bool:
        async with self._conn() as conn:
            status = await conn.execute(
                f"UPDATE jobs SET upstream_checked_at = $1 WHERE id = $2 AND status NOT IN {_TERMINAL_SQL}"
                " AND (upstream_checked_at IS NULL OR upstream_checked_at <= $3)",
                at,
                job_id,
                at - min_interval,
            )
        return bool(status == "UPDATE 1")

    async def stale_jobs(self, *, checked_before: float, created_after: float, limit: int) -> list[Job]:
        async with self._conn() as conn:
            rows = await conn.fetch(
                f"SELECT * FROM jobs WHERE status NOT IN {_TERMINAL_SQL} AND created_at > $1"
                " AND updated_at < $2 AND coalesce(upstream_checked_at, 0) < $2"
                " ORDER BY coalesce(upstream_checked_at, 0), updated_at LIMIT $3",
                created_after,
                checked_before,
                limit,
            )
        return [job_from_row(r) for r in rows]

    async def expire_jobs(self, *, now: float, epoch: int) -> list[str]:
        async with self._conn(transaction=True) as conn:
            if not await _lease_is_current(conn, epoch):
                raise StaleEpoch(f"epoch {epoch} no longer holds the {LEADER_LEASE!r} lease")
            rows = await conn.fetch(
                f"SELECT id, retry_epoch FROM jobs WHERE status NOT IN {_TERMINAL_SQL}"
                " AND deadline_at IS NOT NULL AND deadline_at <= $1 ORDER BY deadline_at",
                now,
            )
            expired = []
            for row in rows:
                key = timed_out_key(row["retry_epoch"])
                event = StatusEvent(row["id"], JobStatus.TIMED_OUT, key, error=TIMED_OUT_ERROR)
                if await _apply(conn, event, None, time.time()) is ApplyOutcome.APPLIED:
                    expired.append(row["id"])
        return expired

    async def recent_jobs(self, limit: int) -> list[Job]:
        async with self._conn() as conn:
            rows = await conn.fetch("SELECT * FROM jobs ORDER BY updated_at DESC LIMIT $1", limit)
        return [job_from_row(r) for r in rows]

    async def wait_for_change(self, job_id: str, since: float, wait_s: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(0.0, wait_s)
        changed = asyncio.Event()
        # Registered before the first look, so a change committed in between still wakes us.
        self._waiters.setdefault(job_id, set()).add(changed)
        try:
            while self._pool is not None:
                try:
                    job = await self.get_job(job_id)
                except StorageError:
                    if self._pool is None:
                        return  # closed while waiting (shutdown): the caller answers with what it has
                    raise
                if job is not None and job.updated_at > since:
                    return
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), min(self._poll_s, remaining))
                changed.clear()
        finally:
            waiters = self._waiters.get(job_id)
            if waiters is not None:
                waiters.discard(changed)
                if not waiters:
                    del self._waiters[job_id]

    # -- client webhook outbox --------------------------------------------------------------------

    async def due_deliveries(self, now: float, limit: int) -> list[Delivery]:
        async with self._conn() as conn:
            rows = await conn.fetch(
                "SELECT * FROM deliveries WHERE state = 'pending' AND next_attempt_at <= $1"
                " ORDER BY next_attempt_at, id LIMIT $2",
                now,
                limit,
            )
        return [_delivery(r) for r in rows]

    async def finish_delivery(
        self, delivery_id: int, *, ok: bool, next_attempt_at: float | None, epoch: int
    ) -> None:
        async with self._conn(transaction=True) as conn:
            if not await _lease_is_current(conn, epoch):
                raise StaleEpoch(f"epoch {epoch} no longer holds the {LEADER_LEASE!r} lease")
            now = time.time()
            if ok:
                await conn.execute(
                    "UPDATE deliveries SET state = 'delivered', attempts = attempts + 1, finished_at = $1"
                    " WHERE id = $2 AND state = 'pending'",
                    now,
                    delivery_id,
                )
            elif next_attempt_at is not None:
                await conn.execute(
                    "UPDATE deliveries SET attempts = attempts + 1, next_attempt_at = $1"
                    " WHERE id = $2 AND state = 'pending'",
                    next_attempt_at,
                    delivery_id,
                )
            else:
                await conn.execute(
                    "UPDATE deliveries SET state = 'failed', attempts = attempts + 1, finished_at = $1"
                    " WHERE id = $2 AND state = 'pending'",
                    now,
                    delivery_id,
                )

    # -- leases -----------------------------------------------------------------------------------

    async def acquire_lease(self, name: str, holder: str, ttl: float) -> int | None:
        async with self._conn(transaction=True) as conn:
            # An expired, epoch-0 row makes the first grant take the same path as every later one.
            await conn.execute(
                "INSERT INTO leases (name, holder, epoch, expires_at) VALUES ($1, '', 0, 0)"
                " ON CONFLICT (name) DO NOTHING",
                name,
            )
            row = await conn.fetchrow(
                f"SELECT holder, epoch, expires_at, {_NOW} AS now FROM leases WHERE name = $1 FOR UPDATE",
                name,
            )
            now = row["now"]
            if row["expires_at"] > now:
                if row["holder"] != holder:
                    return None
                await conn.execute("UPDATE leases SET expires_at = $1 WHERE name = $2", now + ttl, name)
                return int(row["epoch"])
            epoch = int(row["epoch"]) + 1
            await conn.execute(
                "UPDATE leases SET holder = $1, epoch = $2, expires_at = $3 WHERE name = $4",
                holder,
                epoch,
                now + ttl,
                name,
            )
            return epoch

    async def renew_lease(self, name: str, holder: str, epoch: int, ttl: float) -> bool:
        async with self._conn() as conn:
            status = await conn.execute(
                f"UPDATE leases SET expires_at = {_NOW} + $1"
                f" WHERE name = $2 AND holder = $3 AND epoch = $4 AND expires_at > {_NOW}",
                ttl,
                name,
                holder,
                epoch,
            )
        return bool(status == "UPDATE 1")

    async def release_lease(self, name: str, holder: str, epoch: int) -> None:
        async with self._conn() as conn:
            await conn.execute(
                "UPDATE leases SET expires_at = 0 WHERE name = $1 AND holder = $2 AND epoch = $3",
                name,
                holder,
                epoch,
            )
