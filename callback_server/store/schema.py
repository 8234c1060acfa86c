"""The store's schema, the same tables on SQLite and PostgreSQL (types from the adapter's Dialect),
and the migrations that bring an older database up to SCHEMA_VERSION when it is opened."""

from __future__ import annotations

import time

from callback_server.settings import DATABASE_URL
from callback_server.store.base import TERMINAL_SQL
from callback_server.store.steps import KeyLock, Plan, all_rows, execute, value
from orfeas_contract.errors import StorageError

# 2: jobs.callback_ref, callbacks.note, jobs.last_callback.
# 3: one name per concept (jobs.retry_epoch and job_events.retry_epoch are `attempt`, leases.epoch
#    is `fence`); jobs.run_id and jobs.run_attempt (the worker run the job takes events from).
SCHEMA_VERSION = 3
_SCHEMA_KEY = "orfeas:schema"  # replicas opening one empty database create the schema one at a time

_SCHEMA_VERSION_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied_at {real} NOT NULL)"
)
# No index on callbacks.job_id (an older schema's `callbacks_job` is dropped): nothing reads
# callbacks by job (the job row keeps its last callback), and it was one more b-tree write on
# every callback.
_TABLES = f"""
CREATE TABLE IF NOT EXISTS callbacks (
    id {{id}},
    received_at {{real}} NOT NULL,
    provider TEXT NOT NULL,
    headers TEXT NOT NULL,
    query TEXT NOT NULL,
    body {{blob}} NOT NULL,
    body_size {{bigint}} NOT NULL,
    accepted {{bool}} NOT NULL,
    job_id TEXT,
    outcome TEXT,
    note TEXT
);
CREATE INDEX IF NOT EXISTS callbacks_unmarked ON callbacks (id) WHERE outcome IS NULL;
DROP INDEX IF EXISTS callbacks_job;
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    created_at {{real}} NOT NULL,
    updated_at {{real}} NOT NULL,
    progress TEXT,
    output TEXT,
    error TEXT,
    provider TEXT NOT NULL,
    input TEXT,
    idempotency_key TEXT,
    client_webhook TEXT,
    attempt INTEGER NOT NULL DEFAULT 0,
    upstream_checked_at {{real}},
    deadline_at {{real}},
    callback_ref TEXT,
    last_callback TEXT,
    run_id TEXT,
    run_attempt INTEGER
);
CREATE INDEX IF NOT EXISTS jobs_idempotency ON jobs (idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS jobs_open ON jobs (updated_at) WHERE status NOT IN {TERMINAL_SQL};
CREATE INDEX IF NOT EXISTS jobs_recent ON jobs (updated_at);
CREATE TABLE IF NOT EXISTS job_events (
    id {{id}},
    job_id TEXT NOT NULL,
    dedupe_key TEXT NOT NULL,
    status TEXT NOT NULL,
    outcome TEXT NOT NULL,
    attempt INTEGER,
    callback_id {{bigint}},
    at {{real}} NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS job_events_dedupe ON job_events (job_id, dedupe_key)
    WHERE outcome <> 'duplicate';
CREATE TABLE IF NOT EXISTS deliveries (
    id {{id}},
    job_id TEXT NOT NULL,
    url TEXT NOT NULL,
    body {{blob}} NOT NULL,
    msg_id TEXT NOT NULL UNIQUE,
    attempts INTEGER NOT NULL DEFAULT 0,
    terminal {{bool}} NOT NULL,
    next_attempt_at {{real}} NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    created_at {{real}} NOT NULL,
    finished_at {{real}}
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (next_attempt_at) WHERE state = 'pending';
CREATE TABLE IF NOT EXISTS leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    fence {{bigint}} NOT NULL,
    expires_at {{real}} NOT NULL
)
"""
_STATEMENTS = tuple(s.strip() for s in _TABLES.split(";"))

# What an older database is brought up with when it is opened, in this order. Each step looks at
# the table's columns first, so a database at any version (or half-migrated) ends the same.
_RENAMED = (  # (table, old name, new name)
    ("jobs", "retry_epoch", "attempt"),  # 3
    ("job_events", "retry_epoch", "attempt"),  # 3
    ("leases", "epoch", "fence"),  # 3
)
_ADDED = (  # (table, column, type)
    ("jobs", "callback_ref", "TEXT"),  # 2
    ("callbacks", "note", "TEXT"),  # 2
    ("jobs", "last_callback", "TEXT"),  # 2
    ("jobs", "run_id", "TEXT"),  # 3
    ("jobs", "run_attempt", "INTEGER"),  # 3
)


def prepare_schema() -> Plan[None]:
    """Create the schema, or bring an older one to SCHEMA_VERSION; refuse a newer one."""
    yield KeyLock(_SCHEMA_KEY)
    yield execute(_SCHEMA_VERSION_TABLE)
    newest = yield value("SELECT max(version) FROM schema_version")
    if newest is not None and newest > SCHEMA_VERSION:
        raise StorageError(
            f"schema version {newest} is newer than this program's {SCHEMA_VERSION}", field=DATABASE_URL
        )
    for table, old, new in _RENAMED:
        columns = yield from _columns(table)
        if old in columns and new not in columns:
            yield execute(f"ALTER TABLE {table} RENAME COLUMN {old} TO {new}")
    for table, column, kind in _ADDED:
        columns = yield from _columns(table)
        if columns and column not in columns:
            yield execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
    for statement in _STATEMENTS:
        yield execute(statement)
    yield execute(
        "INSERT INTO schema_version (version, applied_at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        SCHEMA_VERSION,
        time.time(),
    )


def _columns(table: str) -> Plan[set[str]]:
    rows = yield all_rows("{columns}", table)
    return {row[0] for row in rows}
