"""SQLite specifics: WAL and FULL sync, group commit, failures isolated within a batch, clean close."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
import pytest_asyncio

from callback_server.store import LEADER_LEASE, Job, StaleFence, Store
from callback_server.store.sqlite import SqliteDatabase
from orfeas.errors import StorageError
from orfeas_contract.status import JobStatus
from tests.store_support import record

pytestmark = pytest.mark.asyncio
T = TypeVar("T")


@pytest_asyncio.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    async with sqlite_store(str(tmp_path / "cb.db")) as opened:
        yield opened


def sqlite_store(path: str, **kwargs: Any) -> Store:
    return Store(SqliteDatabase(path, **kwargs))


def db_of(store: Store) -> SqliteDatabase:
    assert isinstance(store.db, SqliteDatabase)
    return store.db


def raw_write(store: Store, fn: Callable[[sqlite3.Connection], T]) -> asyncio.Future[T]:
    """`fn` as one request of the writer's batches, on its connection (no plan)."""
    writer = db_of(store)._writer
    assert writer is not None
    return writer.submit(fn)


async def test_wal_and_full_sync(store: Store) -> None:
    """The file is in WAL mode and the writer commits with synchronous=FULL (2)."""
    with sqlite3.connect(db_of(store).path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert await raw_write(store, lambda c: c.execute("PRAGMA synchronous").fetchone()[0]) == 2


async def test_concurrent_writes_share_commits(store: Store) -> None:
    """200 concurrent callbacks are committed in fewer transactions than writes, each with its own id."""
    ids = await asyncio.gather(
        *[record(store, "runpod", {"i": str(i)}, b"x%d" % i, "", accepted=True) for i in range(200)]
    )
    assert len(set(ids)) == 200
    commits, writes = db_of(store).commits
    assert writes == 200
    assert commits < writes
    rows = await store.unapplied_callbacks(500)
    assert {r[0]: r[3] for r in rows} == {i: b"x%d" % n for n, i in enumerate(ids)}


async def test_without_group_commit_every_write_is_its_own_transaction(tmp_path: Path) -> None:
    """The baseline mode (group_commit=False) commits each request alone."""
    async with sqlite_store(str(tmp_path / "one.db"), group_commit=False) as store:
        await asyncio.gather(*[record(store, "p", {}, b"", "", accepted=True) for _ in range(50)])
        assert db_of(store).commits == (50, 50)


async def test_a_failing_request_fails_alone_in_its_batch(store: Store) -> None:
    """A refused leader write in the middle of a batch leaves the other writes of the batch committed."""
    fence = await store.acquire_lease(LEADER_LEASE, "me", 30)
    assert fence is not None
    before = [record(store, "p", {}, b"a%d" % i, "", accepted=True) for i in range(20)]
    refused = store.expire_jobs(now=0.0, fence=fence + 5)
    after = [record(store, "p", {}, b"b%d" % i, "", accepted=True) for i in range(20)]
    results = await asyncio.gather(*before, refused, *after, return_exceptions=True)
    assert isinstance(results[20], StaleFence)
    assert all(isinstance(r, int) for r in results[:20] + results[21:])
    assert len(await store.unapplied_callbacks(100)) == 40


async def test_close_finishes_queued_writes(tmp_path: Path) -> None:
    """Writes submitted before close() are committed before the store closes."""
    path = str(tmp_path / "drain.db")
    store = sqlite_store(path)
    await store.open()
    writes = [asyncio.create_task(record(store, "p", {}, b"z", "", accepted=True)) for _ in range(100)]
    await asyncio.sleep(0)  # every task has queued its request
    await store.close()
    ids = await asyncio.gather(*writes)
    assert len(set(ids)) == 100
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM callbacks").fetchone()[0] == 100


async def test_closed_store_raises_storage_error(tmp_path: Path) -> None:
    """Calls on a store that is not open raise StorageError naming DATABASE_URL; ping is False."""
    store = sqlite_store(str(tmp_path / "x.db"))
    with pytest.raises(StorageError) as info:
        await store.get_job("j")
    assert info.value.field == "DATABASE_URL"
    assert await store.ping() is False


async def test_unopenable_file_is_a_storage_error(tmp_path: Path) -> None:
    """A path in a missing directory fails open() with StorageError on DATABASE_URL."""
    store = sqlite_store(str(tmp_path / "missing" / "dir" / "x.db"))
    with pytest.raises(StorageError) as info:
        await store.open()
    assert info.value.field == "DATABASE_URL"


async def test_newer_schema_is_refused(tmp_path: Path) -> None:
    """A database written by a newer schema version is not opened."""
    path = str(tmp_path / "new.db")
    async with sqlite_store(path):
        pass
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO schema_version (version, applied_at) VALUES (99, 0)")
    with pytest.raises(StorageError, match="newer"):
        await sqlite_store(path).open()


async def test_a_request_failing_after_a_write_leaves_none_of_it(store: Store) -> None:
    """A request that wrote a row and then failed is undone alone; its batch-mates still commit."""

    def half_done(conn: sqlite3.Connection) -> None:
        conn.execute(
            "INSERT INTO callbacks (received_at, provider, headers, query, body, body_size, accepted)"
            " VALUES (0, 'half', '{}', '', x'', 0, 1)"
        )
        raise sqlite3.IntegrityError("refused after writing")

    others = [record(store, "p", {}, b"c%d" % i, "", accepted=True) for i in range(30)]
    failing = raw_write(store, half_done)
    results = await asyncio.gather(*others, failing, return_exceptions=True)
    assert isinstance(results[-1], StorageError)
    assert all(isinstance(r, int) for r in results[:-1])
    commits, writes = db_of(store).commits
    assert commits < writes  # the failing request shared a transaction with others
    rows = await store.unapplied_callbacks(100)
    assert sorted(r[3] for r in rows) == sorted(b"c%d" % i for i in range(30))
    assert all(r[1] != "half" for r in rows)


async def test_a_schema_1_file_gets_the_callback_ref_column(tmp_path: Path) -> None:
    """A database written before jobs.callback_ref existed opens: the column is added, old jobs read
    back with no ref, and new jobs store theirs."""
    path = tmp_path / "v1.db"
    conn = sqlite3.connect(path)
    conn.executescript(
        """
        CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at REAL NOT NULL);
        INSERT INTO schema_version VALUES (1, 0);
        CREATE TABLE jobs (
            id TEXT PRIMARY KEY, status TEXT NOT NULL, created_at REAL NOT NULL, updated_at REAL NOT NULL,
            progress TEXT, output TEXT, error TEXT, provider TEXT NOT NULL, input TEXT, idempotency_key TEXT,
            client_webhook TEXT, retry_epoch INTEGER NOT NULL DEFAULT 0, upstream_checked_at REAL,
            deadline_at REAL
        );
        INSERT INTO jobs (id, status, created_at, updated_at, provider)
            VALUES ('old', 'IN_QUEUE', 1, 1, 'runpod');
        """
    )
    conn.close()
    async with sqlite_store(str(path)) as store:
        old = await store.get_job("old")
        assert old is not None
        assert old.callback_ref is None
        fresh = Job("new", JobStatus.IN_QUEUE, 2.0, 2.0, callback_ref="ref-new")
        await store.create_job(fresh)
        stored = await store.get_job("new")
        assert stored is not None
        assert stored.callback_ref == "ref-new"
    async with sqlite_store(str(path)) as store:  # a second open finds the column there
        assert (await store.get_job("new")) is not None
