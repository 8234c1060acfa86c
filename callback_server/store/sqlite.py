"""The embedded store's database: one SQLite file in WAL mode, written through one group-committing
thread.

Why a writer thread over plain sqlite3 rather than aiosqlite: aiosqlite runs each call of one
connection in turn on its thread, so every durable write pays its own COMMIT and its own fsync
(synchronous=FULL). Here one thread owns the only write connection, takes every write request
waiting in its queue, runs them in one transaction (each in a SAVEPOINT, so one failing request
fails alone), commits once and then resolves each caller's future. Concurrent callbacks share one
fsync: while a commit is on disk the next batch gathers. Reads run on a small thread pool, each
thread with its own connection (WAL lets readers run beside the writer).

A write returns only after its COMMIT: with synchronous=FULL the row survives kill -9 and power
loss once the caller sees it. The statements are store/sql.py's, run synchronously on the thread
that owns the connection; the single writer is what PostgreSQL's row locks are for there.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from callback_server.settings import DATABASE_URL
from callback_server.store import schema, steps
from callback_server.store.base import StaleFence
from callback_server.store.store import OnChange
from orfeas_contract.errors import StorageError

T = TypeVar("T")

# The database's clock in unix seconds: unixepoch('subsec') from SQLite 3.42; before it, from the
# Julian day (2440587.5 is 1970-01-01; julianday('now') has millisecond resolution).
_NOW = (
    "unixepoch('subsec')"
    if sqlite3.sqlite_version_info >= (3, 42, 0)
    else "((julianday('now') - 2440587.5) * 86400.0)"
)
DIALECT = steps.Dialect(
    tokens={
        "now": _NOW,
        "for_update": "",  # the one writer thread serialises every write
        "id": "INTEGER PRIMARY KEY AUTOINCREMENT",
        "real": "REAL",
        "blob": "BLOB",
        "bool": "INTEGER",
        "bigint": "INTEGER",
        "columns": "SELECT name FROM pragma_table_info($1)",
    },
    question_marks=True,
)

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
                    results.append(exc if isinstance(exc, StaleFence) else _wrap(exc))
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


# Looked up once, not per statement: an Enum member read through its class is a descriptor call,
# and these run for every statement of every callback on the writer thread.
_NOTHING, _COUNT, _NEW_ID, _ROWS, _ROW = (
    steps.Want.NOTHING,
    steps.Want.COUNT,
    steps.Want.NEW_ID,
    steps.Want.ROWS,
    steps.Want.ROW,
)
_QUERY, _CHANGED = steps.Query, steps.Changed
_translate = DIALECT.sql
_translated = DIALECT.translated  # one dict look-up per statement once translated


def _run(conn: sqlite3.Connection, plan: steps.Plan[T]) -> tuple[T, list[str]]:
    """Run `plan` on `conn` (inside the caller's transaction); its result and the jobs it changed.

    One loop, no helper call per step (not steps.Run either): this runs every statement of every
    callback on the writer thread, where each Python call is paid under the GIL."""
    changed: list[str] = []
    send = plan.send
    execute = conn.execute
    translated = _translated
    result: Any
    try:
        step = send(None)
        while True:
            if type(step) is not _QUERY:
                if type(step) is _CHANGED:
                    changed.append(step[0])
                # A KeyLock takes nothing: the writer runs one transaction at a time.
                step = send(None)
                continue
            text, params, want = step
            sql = translated.get(text)
            if sql is None:
                sql = _translate(text)
            cursor = execute(sql, params)
            if want is _NOTHING:
                result = None
            elif want is _NEW_ID:
                result = cursor.lastrowid  # not RETURNING: about 7 µs less an INSERT (16.5 against 9.5)
            elif want is _COUNT:
                result = cursor.rowcount
            else:
                rows = cursor.fetchall()
                if want is _ROWS:
                    result = rows
                elif not rows:
                    result = None
                else:
                    result = rows[0] if want is _ROW else rows[0][0]
            step = send(result)
    except StopIteration as done:
        return done.value, changed


class SqliteDatabase:
    """One SQLite file behind the Store (see the module docstring for the write path)."""

    def __init__(
        self,
        path: str,
        *,
        group_commit: bool = True,
        readers: int = 4,
        poll_s: float = 0.25,
    ) -> None:
        self.path = path
        self.group_commit = group_commit
        self._readers = readers
        self.poll_s = poll_s  # how often a waiter looks for changes made by another process
        self._writer: _Writer | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._local = threading.local()
        self._read_conns: list[sqlite3.Connection] = []
        self._conns_lock = threading.Lock()
        self._on_change: OnChange = lambda _ids: None

    async def open(self, on_change: OnChange) -> None:
        if self._writer is not None:
            return
        try:
            conn = await asyncio.to_thread(self._open_writer)
        except sqlite3.Error as exc:
            raise StorageError(
                f"cannot open sqlite database {self.path!r}: {exc}", field=DATABASE_URL
            ) from exc
        self._on_change = on_change
        self._writer = _Writer(conn, group_commit=self.group_commit)
        self._writer.start()
        self._pool = ThreadPoolExecutor(max_workers=self._readers, thread_name_prefix="orfeas-sqlite-read")

    def _open_writer(self) -> sqlite3.Connection:
        conn = _connect(self.path, readonly=False)
        try:
            # One transaction: processes opening the same file at once create or migrate it once.
            conn.execute("BEGIN IMMEDIATE")
            _run(conn, schema.prepare_schema())
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

    @property
    def commits(self) -> tuple[int, int]:
        """(transactions committed, write requests in them) since open: the group-commit batch size."""
        return (self._writer.batches, self._writer.ops) if self._writer else (0, 0)

    async def write(self, plan: steps.PlanFactory[T]) -> T:
        if self._writer is None:
            raise StorageError("the store is not open", field=DATABASE_URL)
        result, changed = await self._writer.submit(lambda conn: _run(conn, plan()))
        if changed:
            self._on_change(changed)
        return result

    def _reader(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = _connect(self.path, readonly=True)
            self._local.conn = conn
            with self._conns_lock:
                self._read_conns.append(conn)
        return conn

    async def read(self, plan: steps.PlanFactory[T]) -> T:
        if self._pool is None:
            raise StorageError("the store is not open", field=DATABASE_URL)

        def run() -> T:
            return _run(self._reader(), plan())[0]

        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, run)
        except sqlite3.Error as exc:
            raise _storage_error(exc) from exc
