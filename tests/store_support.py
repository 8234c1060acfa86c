"""Stores for the store and leader tests: SQLite in a temp dir, PostgreSQL from ORFEAS_TEST_POSTGRES_URL.

`StoreMaker` opens any number of store instances on one database (as replicas would) and closes
them all at the end of the test; a PostgreSQL database is emptied before each test. `record`
stores a callback unmarked, through the one write path the server uses; `table_rows` and
`run_sql` read and change a database of either kind directly (migration and crash tests).
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from callback_server.store import Store, open_store, parse_database_url

PG_URL_ENV = "ORFEAS_TEST_POSTGRES_URL"
PG_URL = os.environ.get(PG_URL_ENV)

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param(
        "postgres",
        id="postgres",
        marks=[pytest.mark.postgres, pytest.mark.skipif(not PG_URL, reason=f"{PG_URL_ENV} is not set")],
    ),
]
_TABLES = ("callbacks", "jobs", "job_events", "deliveries", "leases", "schema_version")


async def record(
    store: Store, provider: str, headers: dict[str, str], body: bytes, query: str, *, accepted: bool
) -> int:
    """Store a callback left unmarked (as a crash between record and apply leaves one); its id."""
    recorded = await store.record_and_apply(provider, headers, body, query, accepted=accepted, event=None)
    return recorded.callback_id


async def run_sql(url: str, statements: list[str]) -> None:
    """Run `statements` in order on the database `url` names (SQLite file or PostgreSQL)."""
    target = parse_database_url(url)
    if target.kind == "sqlite":
        conn = sqlite3.connect(target.target)
        try:
            for statement in statements:
                conn.execute(statement)
            conn.commit()
        finally:
            conn.close()
        return
    import asyncpg

    pg = await asyncpg.connect(url)
    try:
        for statement in statements:
            await pg.execute(statement)
    finally:
        await pg.close()


async def table_rows(url: str, table: str) -> list[dict[str, Any]]:
    """Every row of `table` by id, as dicts, from the database `url` names."""
    query = f"SELECT * FROM {table} ORDER BY 1"
    target = parse_database_url(url)
    if target.kind == "sqlite":
        conn = sqlite3.connect(target.target)
        conn.row_factory = sqlite3.Row
        try:
            return [dict(r) for r in conn.execute(query)]
        finally:
            conn.close()
    import asyncpg

    pg = await asyncpg.connect(url)
    try:
        return [dict(r) for r in await pg.fetch(query)]
    finally:
        await pg.close()


async def reset_postgres(url: str) -> None:
    """Drop the store's tables so every test starts from an empty database."""
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        await conn.execute("DROP TABLE IF EXISTS " + ", ".join(_TABLES) + " CASCADE")
    finally:
        await conn.close()


class StoreMaker:
    """Opens store instances on one database; `close_all` closes every one still open."""

    def __init__(self, backend: str, tmp_path: Path) -> None:
        self.backend = backend
        if backend == "sqlite":
            self.url = f"sqlite:///{tmp_path / 'callbacks.db'}"
        else:
            assert PG_URL is not None
            self.url = PG_URL
        self._open: list[Store] = []

    async def prepare(self) -> None:
        if self.backend == "postgres":
            await reset_postgres(self.url)

    async def new(self, **kwargs: object) -> Store:
        store = open_store(self.url, **kwargs)  # type: ignore[arg-type]
        await store.open()
        self._open.append(store)
        return store

    async def close(self, store: Store) -> None:
        self._open.remove(store)
        await store.close()

    async def close_all(self) -> None:
        while self._open:
            await self._open.pop().close()
