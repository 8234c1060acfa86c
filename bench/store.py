"""Durable callback writes: group commit against one transaction per write, in the same run.

    .venv/bin/python bench/store.py [--writers 64] [--seconds 3] [--body 600] [--dir PATH]
                                    [--postgres URL]
    .venv/bin/python bench/store.py --writer-cost 20000 [--repeat 5] [--batch 64] [--existing]

WRITERS coroutines call `record_and_apply` with no event (the callback row alone) back to back
for SECONDS each run (every call durable when it returns: WAL, synchronous=FULL, so each commit
is an fsync). Runs, each on a fresh file
in DIR (default: a temp dir beside the repo, on the same disk the server would use):

- group:    the SQLite store as shipped (one writer thread commits every waiting request at once)
- single:   the same store with group_commit=False (one transaction, one fsync per write)
- aiosqlite: the naive design, one aiosqlite connection, INSERT + COMMIT per write
- group+apply: `record_and_apply` (callback row + job event + job row per request), grouped

--writer-cost N: the SQLite writer thread's CPU per `record_and_apply` with an event, without
the thread hand-off: N requests (unique job ids; with --existing, each job created first, so the
event applies to a known job) run as the writer runs them (store/sqlite.py `_run` on its
connection), BATCH (64) to a transaction as group commit makes them under load; the best of
REPEAT runs, in µs per request, split into building the callback row (done on the event loop)
and running the plan with its share of the COMMIT.

Reported: writes/s, p50/p99 latency per call, mean writes per commit, and the ratio of each run
to `single`. With --postgres, the same callback-row load against PostgreSQL (the server's own
commit path) is added.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from callback_server.store import StatusEvent, Store  # noqa: E402
from callback_server.store.sqlite import SqliteDatabase  # noqa: E402
from orfeas_contract.status import JobStatus  # noqa: E402

HEADERS = {"content-type": "application/json", "user-agent": "RunPod-Webhook/1.0", "webhook-id": ""}


async def _load(
    call: Callable[[int], Awaitable[object]], writers: int, seconds: float
) -> tuple[int, list[float]]:
    latencies: list[float] = []
    stop_at = time.perf_counter() + seconds
    counter = 0

    async def writer() -> None:
        nonlocal counter
        while time.perf_counter() < stop_at:
            counter += 1
            n = counter
            started = time.perf_counter()
            await call(n)
            latencies.append(time.perf_counter() - started)

    await asyncio.gather(*[writer() for _ in range(writers)])
    return len(latencies), latencies


def _row(name: str, count: int, latencies: list[float], seconds: float, per_commit: float | None) -> dict:
    ordered = sorted(latencies)
    return {
        "name": name,
        "rate": count / seconds,
        "p50_ms": statistics.median(ordered) * 1e3,
        "p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1e3,
        "per_commit": per_commit,
    }


def _body(n: int, size: int) -> bytes:
    head = b'{"id":"job-%d","status":"COMPLETED","output":{"mesh":"' % n
    return head + b"x" * max(0, size - len(head) - 3) + b'"}}'


async def _sqlite_run(path: Path, args: argparse.Namespace, *, group: bool, apply: bool) -> dict:
    db = SqliteDatabase(str(path), group_commit=group)
    async with Store(db) as store:

        async def record(n: int) -> object:
            body = _body(n, args.body)
            headers = {**HEADERS, "webhook-id": f"msg-{n}"}
            if not apply:
                return await store.record_and_apply("runpod", headers, body, "", accepted=True, event=None)
            event = StatusEvent(f"job-{n}", JobStatus.COMPLETED, f"msg-{n}", output={"mesh": "s3://b/k"})
            return await store.record_and_apply("runpod", headers, body, "", accepted=True, event=event)

        count, latencies = await _load(record, args.writers, args.seconds)
        commits, ops = db.commits
    name = ("group" if group else "single") + ("+apply" if apply else "")
    return _row(name, count, latencies, args.seconds, ops / commits if commits else None)


async def _aiosqlite_run(path: Path, args: argparse.Namespace) -> dict:
    import json

    import aiosqlite

    async with aiosqlite.connect(str(path), isolation_level=None) as db:
        await db.execute("PRAGMA journal_mode = WAL")
        await db.execute("PRAGMA synchronous = FULL")
        await db.execute(
            "CREATE TABLE callbacks (id INTEGER PRIMARY KEY, received_at REAL, provider TEXT, headers TEXT,"
            " query TEXT, body BLOB, accepted INTEGER)"
        )

        async def record(n: int) -> object:
            # Autocommit: each INSERT is its own transaction, committed (and fsynced) before it returns.
            cur = await db.execute(
                "INSERT INTO callbacks (received_at, provider, headers, query, body, accepted)"
                " VALUES (?, ?, ?, ?, ?, 1)",
                (
                    time.time(),
                    "runpod",
                    json.dumps({**HEADERS, "webhook-id": f"msg-{n}"}),
                    "",
                    _body(n, args.body),
                ),
            )
            return cur.lastrowid

        count, latencies = await _load(record, args.writers, args.seconds)
    return _row("aiosqlite", count, latencies, args.seconds, 1.0)


async def _postgres_run(url: str, args: argparse.Namespace) -> dict:
    from callback_server.store.postgres import PostgresDatabase

    async with Store(PostgresDatabase(url, max_size=min(args.writers, 20))) as store:

        async def record(n: int) -> object:
            headers = {**HEADERS, "webhook-id": f"msg-{n}"}
            body = _body(n, args.body)
            return await store.record_and_apply("runpod", headers, body, "", accepted=True, event=None)

        count, latencies = await _load(record, args.writers, args.seconds)
    return _row("postgres", count, latencies, args.seconds, None)


def writer_cost(args: argparse.Namespace) -> None:
    import sqlite3

    from callback_server.store import schema, sql
    from callback_server.store.sqlite import _connect, _run

    base = Path(args.dir) if args.dir else ROOT
    best_build = best_plan = float("inf")
    for rep in range(args.repeat):
        with tempfile.TemporaryDirectory(prefix=".bench-store-", dir=base) as tmp:
            conn: sqlite3.Connection = _connect(str(Path(tmp) / "cost.db"), readonly=False)
            _run(conn, schema.prepare_schema())
            n = args.writer_cost
            status = JobStatus.IN_PROGRESS if args.existing else JobStatus.COMPLETED
            if args.existing:
                conn.execute("BEGIN")
                for i in range(n):
                    queued = StatusEvent(f"job-{rep}-{i}", JobStatus.IN_QUEUE, f"q-{i}")
                    _run(conn, sql.apply_event(queued, time.time()))
                conn.execute("COMMIT")
            started = time.thread_time()
            made = []
            for i in range(n):
                headers = {**HEADERS, "webhook-id": f"msg-{i}"}
                callback = sql.NewCallback.of(
                    "runpod",
                    headers,
                    _body(i, args.body),
                    "",
                    accepted=True,
                    body_size=None,
                    note=None,
                    max_body_bytes=8 << 20,
                )
                event = StatusEvent(
                    f"job-{rep}-{i}",
                    status,
                    f"msg-{i}",
                    output={"mesh": "s3://b/k"},
                    from_callback=True,
                    word="COMPLETED",
                )
                made.append((callback, event))
            built = time.thread_time()
            now = time.time()
            for first in range(0, n, args.batch):
                conn.execute("BEGIN IMMEDIATE")
                for callback, event in made[first : first + args.batch]:
                    _run(conn, sql.apply_event(event, now, callback=callback))
                conn.execute("COMMIT")
            done = time.thread_time()
            conn.close()
        best_build = min(best_build, (built - started) / n * 1e6)
        best_plan = min(best_plan, (done - built) / n * 1e6)
    kind = "known job (IN_QUEUE -> IN_PROGRESS)" if args.existing else "new job per request"
    print(
        f"writer cost, {args.writer_cost} requests, {args.batch} a transaction, {kind},"
        f" best of {args.repeat} (thread CPU time: the fsync's wait not counted)"
    )
    print(f"  callback row built (event loop): {best_build:6.1f} us/request")
    print(f"  record + apply (writer thread):  {best_plan:6.1f} us/request")


async def main(args: argparse.Namespace) -> None:
    base = Path(args.dir) if args.dir else ROOT
    rows = []
    with tempfile.TemporaryDirectory(prefix=".bench-store-", dir=base) as tmp:
        tmp_path = Path(tmp)
        # single first, then group: the disk sees the baseline before any warm-up advantage.
        rows.append(await _sqlite_run(tmp_path / "single.db", args, group=False, apply=False))
        rows.append(await _sqlite_run(tmp_path / "group.db", args, group=True, apply=False))
        rows.append(await _aiosqlite_run(tmp_path / "aiosqlite.db", args))
        rows.append(await _sqlite_run(tmp_path / "group-apply.db", args, group=True, apply=True))
    if args.postgres:
        rows.append(await _postgres_run(args.postgres, args))
    baseline = rows[0]["rate"]
    print(
        f"{args.writers} concurrent writers, {args.seconds:g} s per run, {args.body}-byte bodies, dir {base}"
    )
    print(f"{'run':<14}{'writes/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'writes/commit':>15}{'vs single':>11}")
    for row in rows:
        per_commit = f"{row['per_commit']:.1f}" if row["per_commit"] is not None else "-"
        print(
            f"{row['name']:<14}{row['rate']:>10.0f}{row['p50_ms']:>9.2f}{row['p99_ms']:>9.2f}"
            f"{per_commit:>15}{row['rate'] / baseline:>10.1f}x"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--writers", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--body", type=int, default=600, help="callback body size in bytes")
    parser.add_argument("--dir", help="where the SQLite files go (default: beside the repo)")
    parser.add_argument("--postgres", help="also measure PostgreSQL at this URL")
    parser.add_argument(
        "--writer-cost", type=int, metavar="N", help="the writer's CPU per request (see above)"
    )
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--batch", type=int, default=64, help="with --writer-cost: requests per commit")
    parser.add_argument("--existing", action="store_true", help="with --writer-cost: events for known jobs")
    parsed = parser.parse_args()
    if parsed.writer_cost:
        writer_cost(parsed)
    else:
        asyncio.run(main(parsed))
