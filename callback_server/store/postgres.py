"""The replicas' database: PostgreSQL through an asyncpg pool.

- Every write is one transaction running a plan of store/sql.py; a plan that decides on a job
  locks its row (SELECT … FOR UPDATE), so concurrent events on one job, from any replica, are
  decided one after the other by `plan_event`.
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
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any, TypeVar

import asyncpg

from callback_server.settings import DATABASE_URL
from callback_server.store import schema, steps
from callback_server.store.store import OnChange
from orfeas_contract.errors import StorageError

T = TypeVar("T")
log = logging.getLogger("callback_server.store")

CHANNEL = "orfeas_jobs"
# Reconnecting the listener: first after half a second, then backing off to once every 30 s.
LISTEN_RETRY_MIN_S = 0.5
LISTEN_RETRY_MAX_S = 30.0
DIALECT = steps.Dialect(
    tokens={
        # clock_timestamp, not now(): the time of the statement, not of the transaction's start.
        "now": "extract(epoch FROM clock_timestamp())::float8",
        "for_update": "FOR UPDATE",
        "id": "BIGSERIAL PRIMARY KEY",
        "real": "DOUBLE PRECISION",
        "blob": "BYTEA",
        "bool": "BOOLEAN",
        "bigint": "BIGINT",
        "columns": "SELECT column_name FROM information_schema.columns"
        " WHERE table_schema = current_schema() AND table_name = $1",
    },
    question_marks=False,
)


def _storage_error(exc: BaseException) -> StorageError:
    return StorageError(f"postgresql: {exc}", field=DATABASE_URL)


@contextlib.contextmanager
def _translated() -> Iterator[None]:
    """Driver and network errors become StorageError where they enter; StaleFence passes through."""
    try:
        yield
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
        raise _storage_error(exc) from exc


async def _answer(conn: asyncpg.Connection, step: steps.Step) -> Any:
    """What `step` gets back, run on `conn` (inside the caller's transaction, if any)."""
    if isinstance(step, steps.KeyLock):
        return await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", step.key)
    if isinstance(step, steps.Changed):  # delivered to every listener at commit
        return await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, step.job_id)
    text, want = DIALECT.sql(step.text), step.want
    if want is steps.Want.NOTHING:
        return await conn.execute(text, *step.params)
    if want is steps.Want.COUNT:
        status = await conn.execute(text, *step.params)  # "UPDATE 1", "INSERT 0 1"
        return int(status.rsplit(" ", 1)[-1])
    if want is steps.Want.NEW_ID:
        return await conn.fetchval(text + " RETURNING id", *step.params)
    if want is steps.Want.ROW:
        return await conn.fetchrow(text, *step.params)
    if want is steps.Want.ROWS:
        return await conn.fetch(text, *step.params)
    return await conn.fetchval(text, *step.params)


async def _run(conn: asyncpg.Connection, plan: steps.Plan[T]) -> T:
    run = steps.Run(plan)
    while run.step is not None:
        run.answer(await _answer(conn, run.step))
    return run.result


class PostgresDatabase:
    """PostgreSQL behind the Store (see the module docstring)."""

    def __init__(
        self,
        dsn: str,
        *,
        min_size: int = 1,
        max_size: int = 10,
        poll_s: float = 1.0,
        connect_timeout: float = 10.0,
    ) -> None:
        self.dsn = dsn
        self._min_size = min_size
        self._max_size = max_size
        self.poll_s = poll_s  # how often a waiter looks again without a notification
        self._connect_timeout = connect_timeout
        self._pool: asyncpg.Pool | None = None
        self._listener: asyncpg.Connection | None = None
        self._listening: asyncio.Task[None] | None = None
        self._on_change: OnChange = lambda _ids: None

    async def open(self, on_change: OnChange) -> None:
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
                    await _run(conn, schema.prepare_schema())
        except BaseException:
            await pool.close()
            raise
        self._pool = pool
        self._on_change = on_change
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
                self._on_change(None)
            else:
                lost = None
                delay = min(delay * 2, LISTEN_RETRY_MAX_S)

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        self._on_change([payload])

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

    @contextlib.asynccontextmanager
    async def _conn(self, *, transaction: bool) -> AsyncIterator[asyncpg.Connection]:
        if self._pool is None:
            raise StorageError("the store is not open", field=DATABASE_URL)
        with _translated():
            async with self._pool.acquire() as conn:
                if transaction:
                    async with conn.transaction():
                        yield conn
                else:
                    yield conn

    async def write(self, plan: steps.PlanFactory[T]) -> T:
        async with self._conn(transaction=True) as conn:
            return await _run(conn, plan())

    async def read(self, plan: steps.PlanFactory[T]) -> T:
        async with self._conn(transaction=False) as conn:
            return await _run(conn, plan())
