"""Durable stores for the callback server: SQLite (embedded, default) and PostgreSQL (replicas).

One `Store` (store.py) over the SQL written once (sql.py) and an adapter per database (sqlite.py,
postgres.py). `open_store(url)` builds the store a DATABASE_URL names, not yet opened; use it as
`async with open_store(url) as store:` or call `open()`/`close()`. asyncpg is imported only when a
PostgreSQL URL is used, so `import callback_server.store` stays light.
"""

from __future__ import annotations

from callback_server.settings import ServerSettings
from callback_server.store.base import (
    LEADER_LEASE,
    ApplyOutcome,
    Delivery,
    Job,
    RecordedCallback,
    StaleFence,
    StatusEvent,
    StoredCallback,
    plan_event,
)
from callback_server.store.store import Store
from callback_server.store.url import DatabaseUrl, parse_database_url

__all__ = [
    "LEADER_LEASE",
    "ApplyOutcome",
    "DatabaseUrl",
    "Delivery",
    "Job",
    "RecordedCallback",
    "StaleFence",
    "StatusEvent",
    "Store",
    "StoredCallback",
    "open_store",
    "parse_database_url",
    "plan_event",
]


def open_store(url: str, *, max_body_bytes: int = ServerSettings.max_body_bytes) -> Store:
    """The store `url` names (ServerSettings.database_url, DATABASE_URL); not yet opened.

    Raises ConfigError (field DATABASE_URL) for a malformed URL. Bodies longer than
    `max_body_bytes` are stored truncated (their full size is kept beside them).
    """
    parsed = parse_database_url(url)
    if parsed.kind == "sqlite":
        from callback_server.store.sqlite import SqliteDatabase

        return Store(SqliteDatabase(parsed.target), max_body_bytes=max_body_bytes)
    from callback_server.store.postgres import PostgresDatabase

    return Store(PostgresDatabase(parsed.target), max_body_bytes=max_body_bytes)
