"""The embedded store: one SQLite file in WAL mode, written through one group-committing thread.

Why a writer thread over plain sqlite3 rather than aiosqlite: aiosqlite runs each call of one
connection in turn on its thread, so every durable write pays its own COMMIT and its own fsync
(synchronous=FULL). Here one thread owns the only write connection, takes every write request
waiting in its queue, runs them in one transaction (each in a SAVEPOINT, so one failing request
fails alone), commits once and then resolves each caller's future. Concurrent callbacks share one
fsync: while a commit is on disk the next batch gathers. Reads run on a small thread pool, each
thread with its own connection (WAL lets readers run beside the writer).

`record_callback` returns only after its COMMIT: with synchronous=FULL the row survives kill -9
and power loss once the caller sees the id.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

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

T = TypeVar("T")

# 2: jobs.callback_ref, callbacks.note, jobs.last_callback (added to a version-1 file when it is
# opened).
SCHEMA_VERSION = 2
_TERMINAL = tuple(s.value for s in JobStatus if s.is_terminal)
_TERMINAL_SQL = "(" + ",".join(f"'{s}'" for s in _TERMINAL) + ")"

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS schema_version (
    version INTEGER PRIMARY KEY,
    applied_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS callbacks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    received_at REAL NOT NULL,
    provider TEXT NOT NULL,
    headers TEXT NOT NULL,
    query TEXT NOT NULL,
    body BLOB NOT NULL,
    body_size INTEGER NOT NULL,
    accepted INTEGER NOT NULL,
    job_id TEXT,
    outcome TEXT,
    note TEXT
);
CREATE INDEX IF NOT EXISTS callbacks_unmarked ON callbacks (id) WHERE outcome IS NULL;
CREATE INDEX IF NOT EXISTS callbacks_job ON callbacks (job_id);
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    progress TEXT,
    output TEXT,
    error TEXT,
    provider TEXT NOT NULL,
    input TEXT,
    idempotency_key TEXT,
    client_webhook TEXT,
    retry_epoch INTEGER NOT NULL DEFAULT 0,
    upstream_checked_at REAL,
    deadline_at REAL,
    callback_ref TEXT,
    last_callback TEXT
);
CREATE INDEX IF NOT EXISTS jobs_idempotency ON jobs (idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS jobs_open ON jobs (updated_at) WHERE status NOT IN {_TERMINAL_SQL};
CREATE INDEX IF NOT EXISTS jobs_recent ON jobs (updated_at);
CREATE TABLE IF NOT EXISTS job_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id TEXT NOT NULL,
    dedupe_key TEXT NOT NULL,
    status TEXT NOT NULL,
    outcome TEXT NOT NULL,
    retry_epoch INTEGER,
    callback_id INTEGER,
    at REAL NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS job_events_dedupe ON job_events (job_id, dedupe_key)
    WHERE outcome <> 'duplicate';
CREATE TABLE IF NOT EXISTS deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id TEXT NOT NULL,
    url TEXT NOT NULL,
    body BLOB NOT NULL,
    msg_id TEXT NOT NULL UNIQUE,
    attempts INTEGER NOT NULL DEFAULT 0,
    terminal INTEGER NOT NULL,
    next_attempt_at REAL NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    created_at REAL NOT NULL,
    finished_at REAL
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (next_attempt_at) WHERE state = 'pending';
CREATE TABLE IF NOT EXISTS leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    epoch INTEGER NOT NULL,
    expires_at REAL NOT NULL
);
"""

_STOP = object()
# A batch is bounded so one commit never holds thousands of callers; 512 rows of a few KiB commit
# in well under a millisecond before the fsync.
_MAX_BATCH = 512
_BUSY_TIMEOUT_MS = 5000  # other processes on the same file (a second store, a CLI) wait, not fail


def _connect(path: str, *, readonly: bool) -> sqlite3.Connection:
    conn = sqlite3.connect(
        path, isolation_level=None, check_same_thread=False, timeout=_BUSY_TIMEOUT_MS / 1e3
    )
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
    if readonly:
        conn.execute("PRAGMA query_only = 1")
    else:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
    return conn


# Columns newer than schema version 1: (table, column, type).
_ADDED_COLUMNS = (
    ("jobs", "callback_ref", "TEXT"),
    ("callbacks", "note", "TEXT"),
    ("jobs", "last_callback", "TEXT"),
)


def _add_missing_columns(conn: sqlite3.Connection) -> None:
    for table, column, kind in _ADDED_COLUMNS:
        names = {row["name"] for row in conn.execute(f"PRAGMA table_info({table})")}
        if column not in names:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")


def _storage_error(exc: BaseException) -> StorageError:
    return StorageError(f"sqlite: {exc}", field=DATABASE_URL)


class _Op:
    __slots__ = ("fn", "future", "loop")

    def __init__(
        self,
        fn: Callable[[sqlite3.Connection], Any],
        future: asyncio.Future[Any],
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.fn = fn
        self.future = future
        self.loop = loop


def _settle(future: asyncio.Future[Any], result: Any) -> None:
    if future.done():
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)


def _settle_all(settled: list[tuple[asyncio.Future[Any], Any]]) -> None:
    for future, result in settled:
        _settle(future, result)


class _Writer:
    """The one thread that writes; `group_commit=False` commits every request alone (the baseline)."""

    def __init__(self, conn: sqlite3.Connection, *, group_commit: bool) -> None:
        self._conn = conn
        self._group = group_commit
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="orfeas-sqlite-writer", daemon=True)
        self.batches = 0  # commits done, for the benchmark's batch-size figure
        self.ops = 0

    def start(self) -> None:
        self._thread.start()

    def submit(self, fn: Callable[[sqlite3.Connection], T]) -> asyncio.Future[T]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put(_Op(fn, future, loop))
        return future

    def stop(self) -> None:
        """Finish every request already queued, then end the thread (blocking: call off the loop)."""
        self._queue.put(_STOP)
        self._thread.join()
        self._conn.close()

    def _run(self) -> None:
        stopping = False
        while not stopping:
            item = self._queue.get()
            if item is _STOP:
                break
            batch = [item]
            while self._group and len(batch) < _MAX_BATCH:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is _STOP:
                    stopping = True
                    break
                batch.append(more)
            self._commit(batch)

    def _commit(self, batch: list[_Op]) -> None:
        # One transaction for the batch. Requests rarely fail, so they first run without a
        # savepoint each (two statements fewer per request); if one fails, the transaction is
        # rolled back and the batch runs again with a savepoint per request, so a failing
        # request fails alone and the others still commit.
        try:
            results = self._run_batch(batch, isolated=len(batch) == 1)
        except _RetryIsolated:
            results = self._run_batch(batch, isolated=True)
        self.batches += 1
        self.ops += len(batch)
        # One wake-up per event loop for the whole batch, not one per caller: each
        # call_soon_threadsafe writes to the loop's self-pipe.
        by_loop: dict[Any, list[tuple[asyncio.Future[Any], Any]]] = {}
        for op, result in zip(batch, results, strict=True):
            by_loop.setdefault(op.loop, []).append((op.future, result))
        for loop, settled in by_loop.items():
            # A closed loop (RuntimeError) means nobody waits for these answers any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_settle_all, settled)

    def _run_batch(self, batch: list[_Op], *, isolated: bool) -> list[Any]:
        """Each request's result (or exception) after one COMMIT; every one a storage error when
        the transaction itself fails. Without `isolated`, a failing request raises _RetryIsolated."""
        conn = self._conn
        results: list[Any] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for op in batch:
                if not isolated:
                    try:
                        results.append(op.fn(conn))
                    except Exception as exc:
                        raise _RetryIsolated from exc
                    continue
                conn.execute("SAVEPOINT op")
                try:
                    results.append(op.fn(conn))
                except Exception as exc:
                    conn.execute("ROLLBACK TO op")
                    results.append(exc if isinstance(exc, StaleEpoch) else _wrap(exc))
                conn.execute("RELEASE op")
            conn.execute("COMMIT")
        except _RetryIsolated:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise
        except Exception as exc:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            results = [_storage_error(exc)] * len(batch)
        return results


class _RetryIsolated(Exception):
    """A request failed in a batch run without savepoints: run the batch again with them."""


def _wrap(exc: Exception) -> Exception:
    if isinstance(exc, sqlite3.Error):
        return _storage_error(exc)
    return exc


def _statement(sql: str, params: tuple[Any, ...]) -> Callable[[sqlite3.Connection], None]:
    """A write request that runs one statement and returns nothing."""

    def run(conn: sqlite3.Connection) -> None:
        conn.execute(sql, params)

    return run


def _lease_is_current(conn: sqlite3.Connection, epoch: int) -> bool:
    row = conn.execute("SELECT epoch, expires_at FROM leases WHERE name = ?", (LEADER_LEASE,)).fetchone()
    return row is not None and row["epoch"] == epoch and row["expires_at"] > time.time()


def _apply(
    conn: sqlite3.Connection,
    event: StatusEvent,
    callback_id: int | None,
    now: float,
    record: Callable[[ApplyOutcome], int] | None = None,
) -> ApplyOutcome:
    """Apply one event. `callback_id` names a stored callback to mark with the outcome; `record`
    instead stores the callback, already marked, once the outcome is known (one write, not two)."""
    row = conn.execute("SELECT * FROM jobs WHERE id = ?", (event.job_id,)).fetchone()
    job = job_from_row(row) if row is not None else None
    event = scoped_to_attempt(event, job)
    seen = (
        job is not None
        and conn.execute(
            "SELECT 1 FROM job_events WHERE job_id = ? AND dedupe_key = ? AND outcome <> 'duplicate'",
            (event.job_id, event.dedupe_key),
        ).fetchone()
        is not None
    )
    outcome, new = plan_event(job, event, seen=seen, now=now)
    if new is not None:
        _write_job(conn, new, insert=outcome is ApplyOutcome.CREATED)
        if outcome is ApplyOutcome.APPLIED:
            _queue(conn, delivery_for(new, event.dedupe_key, now), now)
    marked = callback_id
    if record is not None:
        callback_id = record(outcome)
    # A WRONG_JOB event keeps no job event: it would count as "seen" and turn the job's own
    # event with that dedupe key into a duplicate.
    if outcome is not ApplyOutcome.WRONG_JOB:
        conn.execute(
            "INSERT INTO job_events (job_id, dedupe_key, status, outcome, retry_epoch, callback_id, at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                event.job_id,
                event.dedupe_key,
                event.status.value,
                outcome.value,
                event.retry_epoch,
                callback_id,
                now,
            ),
        )
    if marked is not None:
        conn.execute(
            "UPDATE callbacks SET job_id = ?, outcome = ? WHERE id = ?",
            (event.job_id, outcome.value, marked),
        )
    return outcome


def _queue(conn: sqlite3.Connection, delivery: QueuedDelivery | None, now: float) -> None:
    """Put a client webhook in the outbox, inside the caller's transaction (once per msg_id)."""
    if delivery is None:
        return
    conn.execute(
        "INSERT INTO deliveries (job_id, url, body, msg_id, terminal, next_attempt_at, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (msg_id) DO NOTHING",
        (delivery.job_id, delivery.url, delivery.body, delivery.msg_id, int(delivery.terminal), now, now),
    )


_INSERT_JOB = f"INSERT INTO jobs ({', '.join(JOB_COLUMNS)}) VALUES ({', '.join('?' for _ in JOB_COLUMNS)})"
_UPDATE_JOB = f"UPDATE jobs SET {', '.join(f'{c} = ?' for c in JOB_COLUMNS[1:])} WHERE id = ?"


def _write_job(conn: sqlite3.Connection, job: Job, *, insert: bool) -> None:
    params = job_params(job)
    if insert:
        conn.execute(_INSERT_JOB, params)
    else:
        conn.execute(_UPDATE_JOB, (*params[1:], params[0]))


def _delivery(row: sqlite3.Row) -> Delivery:
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


class SqliteStore:
    """The Store protocol on one SQLite file (see the module docstring for the write path)."""

    def __init__(
        self,
        path: str,
        *,
        max_body_bytes: int = 8 * 1024 * 1024,
        group_commit: bool = True,
        readers: int = 4,
        poll_s: float = 0.25,
    ) -> None:
        self.path = path
        self.max_body_bytes = max_body_bytes
        self.group_commit = group_commit
        self._readers = readers
        self._poll_s = poll_s  # how often a waiter looks for changes made by another process
        self._writer: _Writer | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._local = threading.local()
        self._read_conns: list[sqlite3.Connection] = []
        self._conns_lock = threading.Lock()
        self._waiters: dict[str, set[asyncio.Event]] = {}

    # -- life cycle -------------------------------------------------------------------------------

    async def open(self) -> None:
        if self._writer is not None:
            return
        try:
            conn = await asyncio.to_thread(self._open_writer)
        except sqlite3.Error as exc:
            raise StorageError(
                f"cannot open sqlite database {self.path!r}: {exc}", field=DATABASE_URL
            ) from exc
        self._writer = _Writer(conn, group_commit=self.group_commit)
        self._writer.start()
        self._pool = ThreadPoolExecutor(max_workers=self._readers, thread_name_prefix="orfeas-sqlite-read")

    def _open_writer(self) -> sqlite3.Connection:
        conn = _connect(self.path, readonly=False)
        try:
            # One script, one transaction: replicas opening the same file at once create it once.
            conn.executescript("BEGIN IMMEDIATE;" + _SCHEMA + "COMMIT;")
            conn.execute("BEGIN IMMEDIATE")
            _add_missing_columns(conn)
            row = conn.execute("SELECT max(version) AS v FROM schema_version").fetchone()
            if row["v"] is not None and row["v"] > SCHEMA_VERSION:
                raise sqlite3.DatabaseError(
                    f"schema version {row['v']} is newer than this program's {SCHEMA_VERSION}"
                )
            conn.execute(
                "INSERT OR IGNORE INTO schema_version (version, applied_at) VALUES (?, ?)",
                (SCHEMA_VERSION, time.time()),
            )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            conn.close()
            raise
        return conn

    async def close(self) -> None:
        writer, pool = self._writer, self._pool
        self._writer = self._pool = None
        if writer is not None:
            await asyncio.to_thread(writer.stop)
        if pool is not None:
            await asyncio.to_thread(pool.shutdown, True)
        with self._conns_lock:
            conns, self._read_conns = self._read_conns, []
        for conn in conns:
            conn.close()
        for events in self._waiters.values():
            for event in events:
                event.set()

    async def __aenter__(self) -> SqliteStore:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def commits(self) -> tuple[int, int]:
        """(transactions committed, write requests in them) since open: the group-commit batch size."""
        return (self._writer.batches, self._writer.ops) if self._writer else (0, 0)

    # -- plumbing ---------------------------------------------------------------------------------

    def _write(self, fn: Callable[[sqlite3.Connection], T]) -> asyncio.Future[T]:
        if self._writer is None:
            raise StorageError("the store is not open", field=DATABASE_URL)
        return self._writer.submit(fn)

    def _reader(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = _connect(self.path, readonly=True)
            self._local.conn = conn
            with self._conns_lock:
                self._read_conns.append(conn)
        return conn

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._pool is None:
            raise StorageError("the store is not open", field=DATABASE_URL)

        def run() -> T:
            return fn(self._reader())

        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, run)
        except sqlite3.Error as exc:
            raise _storage_error(exc) from exc

    def _notify(self, job_ids: Iterable[str]) -> None:
        for job_id in job_ids:
            for event in self._waiters.get(job_id, ()):
                event.set()

    async def ping(self) -> bool:
        try:
            return await self._read(lambda c: c.execute("SELECT 1").fetchone()[0] == 1)
        except StorageError:
            return False

    # -- callbacks --------------------------------------------------------------------------------

    def _insert_callback(
        self,
        conn: sqlite3.Connection,
        provider: str,
        headers: dict[str, str],
        body: bytes,
        query: str,
        accepted: bool,
        job_id: str | None = None,
        outcome: str | None = None,
        body_size: int | None = None,
        note: str | None = None,
    ) -> int:
        query, note = callback_text(query, note)
        cur = conn.execute(
            "INSERT INTO callbacks (received_at, provider, headers, query, body, body_size, accepted,"
            " job_id, outcome, note) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                time.time(),
                provider,
                json.dumps(headers),
                query,
                bytes(body[: self.max_body_bytes]),
                len(body) if body_size is None else body_size,
                int(accepted),
                job_id,
                outcome,
                note,
            ),
        )
        rowid = cur.lastrowid
        assert rowid is not None  # set by the INSERT just run
        return rowid

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
        return await self._write(
            lambda c: self._insert_callback(
                c, provider, headers, body, query, accepted, body_size=body_size, note=note
            )
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
        def op(conn: sqlite3.Connection) -> RecordedCallback:
            if event is None:
                callback_id = self._insert_callback(
                    conn, provider, headers, body, query, accepted, job_id, outcome, body_size, note
                )
                return RecordedCallback(callback_id, None)
            ids: list[int] = []

            def record(applied: ApplyOutcome) -> int:
                ids.append(
                    self._insert_callback(
                        conn,
                        provider,
                        headers,
                        body,
                        query,
                        accepted,
                        event.job_id,
                        applied.value,
                        body_size,
                        note,
                    )
                )
                return ids[0]

            applied = _apply(conn, event, None, time.time(), record)
            return RecordedCallback(ids[0], applied)

        recorded = await self._write(op)
        if event is not None and recorded.outcome in (ApplyOutcome.CREATED, ApplyOutcome.APPLIED):
            self._notify([event.job_id])
        return recorded

    async def mark_callback(self, callback_id: int, *, job_id: str | None, outcome: str) -> None:
        await self._write(
            _statement(
                "UPDATE callbacks SET job_id = ?, outcome = ? WHERE id = ?", (job_id, outcome, callback_id)
            )
        )

    async def unapplied_callbacks(self, limit: int) -> list[StoredCallback]:
        def op(conn: sqlite3.Connection) -> list[StoredCallback]:
            rows = conn.execute(
                "SELECT id, provider, headers, body, query, accepted FROM callbacks WHERE outcome IS NULL"
                " ORDER BY id LIMIT ?",
                (limit,),
            ).fetchall()
            return [StoredCallback.from_row(r) for r in rows]

        return await self._read(op)

    # -- jobs -------------------------------------------------------------------------------------

    async def create_job(self, job: Job) -> Job:
        def op(conn: sqlite3.Connection) -> tuple[Job, bool]:
            row = conn.execute("SELECT * FROM jobs WHERE id = ?", (job.id,)).fetchone()
            if row is not None:
                existing = job_from_row(row)
                merged = merge_submitted(existing, job)
                if merged is None:
                    return existing, False
                _write_job(conn, merged, insert=False)
                if merged.status.is_terminal and not existing.client_webhook:
                    now = time.time()
                    _queue(conn, delivery_for(merged, f"submitted:{merged.status.value}", now), now)
                return merged, False
            if job.idempotency_key is not None:
                row = conn.execute(
                    f"SELECT * FROM jobs WHERE idempotency_key = ? AND status NOT IN {_TERMINAL_SQL}"
                    " ORDER BY created_at DESC LIMIT 1",
                    (job.idempotency_key,),
                ).fetchone()
                if row is not None:
                    return job_from_row(row), False
            _write_job(conn, job, insert=True)
            return job, True

        stored, inserted = await self._write(op)
        if inserted:
            self._notify([stored.id])
        return stored

    async def get_job(self, job_id: str) -> Job | None:
        def op(conn: sqlite3.Connection) -> Job | None:
            row = conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
            return job_from_row(row) if row is not None else None

        return await self._read(op)

    async def find_by_idempotency_key(self, key: str) -> Job | None:
        def op(conn: sqlite3.Connection) -> Job | None:
            row = conn.execute(
                "SELECT * FROM jobs WHERE idempotency_key = ? ORDER BY created_at DESC LIMIT 1", (key,)
            ).fetchone()
            return job_from_row(row) if row is not None else None

        return await self._read(op)

    async def apply_event(self, event: StatusEvent, *, callback_id: int | None = None) -> ApplyOutcome:
        outcome = await self._write(lambda c: _apply(c, event, callback_id, time.time()))
        if outcome in (ApplyOutcome.CREATED, ApplyOutcome.APPLIED):
            self._notify([event.job_id])
        return outcome

    async def mark_upstream_checked(self, job_id: str, at: float, *, min_interval: float = 0.0) -> bool:
        def op(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                f"UPDATE jobs SET upstream_checked_at = ? WHERE id = ? AND status NOT IN {_TERMINAL_SQL}"
                " AND (upstream_checked_at IS NULL OR upstream_checked_at <= ?)",
                (at, job_id, at - min_interval),
            )
            return cur.rowcount == 1

        return await self._write(op)

    async def stale_jobs(self, *, checked_before: float, created_after: float, limit: int) -> list[Job]:
        def op(conn: sqlite3.Connection) -> list[Job]:
            rows = conn.execute(
                f"SELECT * FROM jobs WHERE status NOT IN {_TERMINAL_SQL} AND created_at > ?"
                " AND updated_at < ? AND coalesce(upstream_checked_at, 0) < ?"
                " ORDER BY coalesce(upstream_checked_at, 0), updated_at LIMIT ?",
                (created_after, checked_before, checked_before, limit),
            ).fetchall()
            return [job_from_row(r) for r in rows]

        return await self._read(op)

    async def expire_jobs(self, *, now: float, epoch: int) -> list[str]:
        def op(conn: sqlite3.Connection) -> list[str]:
            if not _lease_is_current(conn, epoch):
                raise StaleEpoch(f"epoch {epoch} no longer holds the {LEADER_LEASE!r} lease")
            rows = conn.execute(
                f"SELECT id, retry_epoch FROM jobs WHERE status NOT IN {_TERMINAL_SQL}"
                " AND deadline_at IS NOT NULL AND deadline_at <= ? ORDER BY deadline_at",
                (now,),
            ).fetchall()
            expired = []
            for row in rows:
                job_id = row["id"]
                key = timed_out_key(row["retry_epoch"])
                event = StatusEvent(job_id, JobStatus.TIMED_OUT, key, error=TIMED_OUT_ERROR)
                if _apply(conn, event, None, time.time()) is ApplyOutcome.APPLIED:
                    expired.append(job_id)
            return expired

        expired = await self._write(op)
        self._notify(expired)
        return expired

    async def recent_jobs(self, limit: int) -> list[Job]:
        def op(conn: sqlite3.Connection) -> list[Job]:
            rows = conn.execute("SELECT * FROM jobs ORDER BY updated_at DESC LIMIT ?", (limit,)).fetchall()
            return [job_from_row(r) for r in rows]

        return await self._read(op)

    async def wait_for_change(self, job_id: str, since: float, wait_s: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(0.0, wait_s)
        changed = asyncio.Event()
        # Registered before the first look, so a change committed in between still wakes us.
        self._waiters.setdefault(job_id, set()).add(changed)
        try:
            while self._writer is not None:
                try:
                    job = await self.get_job(job_id)
                except StorageError:
                    if self._writer is None:
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
        def op(conn: sqlite3.Connection) -> list[Delivery]:
            rows = conn.execute(
                "SELECT * FROM deliveries WHERE state = 'pending' AND next_attempt_at <= ?"
                " ORDER BY next_attempt_at, id LIMIT ?",
                (now, limit),
            ).fetchall()
            return [_delivery(r) for r in rows]

        return await self._read(op)

    async def finish_delivery(
        self, delivery_id: int, *, ok: bool, next_attempt_at: float | None, epoch: int
    ) -> None:
        def op(conn: sqlite3.Connection) -> None:
            if not _lease_is_current(conn, epoch):
                raise StaleEpoch(f"epoch {epoch} no longer holds the {LEADER_LEASE!r} lease")
            now = time.time()
            if ok:
                conn.execute(
                    "UPDATE deliveries SET state = 'delivered', attempts = attempts + 1, finished_at = ?"
                    " WHERE id = ? AND state = 'pending'",
                    (now, delivery_id),
                )
            elif next_attempt_at is not None:
                conn.execute(
                    "UPDATE deliveries SET attempts = attempts + 1, next_attempt_at = ?"
                    " WHERE id = ? AND state = 'pending'",
                    (next_attempt_at, delivery_id),
                )
            else:
                conn.execute(
                    "UPDATE deliveries SET state = 'failed', attempts = attempts + 1, finished_at = ?"
                    " WHERE id = ? AND state = 'pending'",
                    (now, delivery_id),
                )

        await self._write(op)

    # -- leases -----------------------------------------------------------------------------------

    async def acquire_lease(self, name: str, holder: str, ttl: float) -> int | None:
        def op(conn: sqlite3.Connection) -> int | None:
            now = time.time()
            row = conn.execute(
                "SELECT holder, epoch, expires_at FROM leases WHERE name = ?", (name,)
            ).fetchone()
            if row is None:
                conn.execute(
                    "INSERT INTO leases (name, holder, epoch, expires_at) VALUES (?, ?, 1, ?)",
                    (name, holder, now + ttl),
                )
                return 1
            if row["expires_at"] > now:
                if row["holder"] != holder:
                    return None
                conn.execute("UPDATE leases SET expires_at = ? WHERE name = ?", (now + ttl, name))
                return int(row["epoch"])
            epoch = int(row["epoch"]) + 1
            conn.execute(
                "UPDATE leases SET holder = ?, epoch = ?, expires_at = ? WHERE name = ?",
                (holder, epoch, now + ttl, name),
            )
            return epoch

        return await self._write(op)

    async def renew_lease(self, name: str, holder: str, epoch: int, ttl: float) -> bool:
        def op(conn: sqlite3.Connection) -> bool:
            now = time.time()
            cur = conn.execute(
                "UPDATE leases SET expires_at = ?"
                " WHERE name = ? AND holder = ? AND epoch = ? AND expires_at > ?",
                (now + ttl, name, holder, epoch, now),
            )
            return cur.rowcount == 1

        return await self._write(op)

    async def release_lease(self, name: str, holder: str, epoch: int) -> None:
        await self._write(
            _statement(
                "UPDATE leases SET expires_at = 0 WHERE name = ? AND holder = ? AND epoch = ?",
                (name, holder, epoch),
            )
        )
