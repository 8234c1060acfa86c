"""PostgreSQL specifics: NOTIFY wake-ups, replicas creating the schema together, unreachable server."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from callback_server.store import StatusEvent, Store
from callback_server.store.postgres import PostgresDatabase
from orfeas.errors import StorageError
from orfeas_contract.status import JobStatus
from tests.store_support import PG_URL, PG_URL_ENV, reset_postgres

pytestmark = pytest.mark.asyncio
needs_pg = pytest.mark.skipif(not PG_URL, reason=f"{PG_URL_ENV} is not set")


def pg_store(dsn: str, **kwargs: Any) -> Store:
    return Store(PostgresDatabase(dsn, **kwargs))


def db_of(store: Store) -> PostgresDatabase:
    assert isinstance(store.db, PostgresDatabase)
    return store.db


@pytest.mark.postgres
@needs_pg
async def test_notify_wakes_waiters_without_polling() -> None:
    """A waiter whose poll interval is 60 s wakes through LISTEN/NOTIFY on another replica's change."""
    assert PG_URL is not None
    await reset_postgres(PG_URL)
    async with pg_store(PG_URL, poll_s=60) as waiter, pg_store(PG_URL) as writer:
        await writer.apply_event(StatusEvent("j", JobStatus.IN_QUEUE, "q"))
        await _woken_by_notification(waiter, writer, "j")


async def _woken_by_notification(waiter: Store, writer: Store, job_id: str) -> None:
    """A waiter on `job_id` (polling only every 60 s) wakes within 20 s of the writer's change."""
    job = await waiter.get_job(job_id)
    assert job is not None
    waiting = asyncio.create_task(waiter.wait_for_change(job_id, job.updated_at, 50))
    await asyncio.sleep(0.2)
    assert not waiting.done()
    await writer.apply_event(StatusEvent(job_id, JobStatus.IN_PROGRESS, "p"))
    await asyncio.wait_for(waiting, 20)  # far below the 60 s poll: the notification woke it


@pytest.mark.postgres
@needs_pg
async def test_replicas_open_an_empty_database_together() -> None:
    """Five replicas opening an empty database at once create the schema once, without errors."""
    assert PG_URL is not None
    await reset_postgres(PG_URL)
    stores = [pg_store(PG_URL, max_size=2) for _ in range(5)]
    try:
        await asyncio.gather(*[s.open() for s in stores])
        fences = await asyncio.gather(*[s.acquire_lease("lock", f"r{i}", 30) for i, s in enumerate(stores)])
        assert sorted(f is not None for f in fences) == [False] * 4 + [True]
    finally:
        await asyncio.gather(*[s.close() for s in stores])


async def test_unreachable_server_is_a_storage_error() -> None:
    """A server that refuses connections fails open() with StorageError on DATABASE_URL."""
    store = pg_store("postgresql://orfeas@127.0.0.1:1/none", connect_timeout=5)
    with pytest.raises(StorageError) as info:
        await store.open()
    assert info.value.field == "DATABASE_URL"


@pytest.mark.postgres
@needs_pg
async def test_a_dropped_listener_connects_again_and_wakes_waiters() -> None:
    """When the LISTEN connection is killed server-side, the store connects it again and
    notifications wake waiters again, well inside their 60 s poll."""
    import asyncpg

    assert PG_URL is not None
    await reset_postgres(PG_URL)
    async with pg_store(PG_URL, poll_s=60) as waiter, pg_store(PG_URL) as writer:
        await writer.apply_event(StatusEvent("d", JobStatus.IN_QUEUE, "q"))
        listener = db_of(waiter)._listener
        assert listener is not None
        admin = await asyncpg.connect(PG_URL)
        try:
            assert await admin.fetchval("SELECT pg_terminate_backend($1)", listener.get_server_pid())
        finally:
            await admin.close()
        for _ in range(100):  # back within a few seconds (the first retry waits 0.5 s)
            if db_of(waiter)._listener is not None and db_of(waiter)._listener is not listener:
                break
            await asyncio.sleep(0.05)
        assert db_of(waiter)._listener is not None
        assert db_of(waiter)._listener is not listener
        await _woken_by_notification(waiter, writer, "d")
    assert db_of(waiter)._listening is None  # closed with the store
