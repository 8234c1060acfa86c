"""Durable callback writes: group commit against one transaction per write, in the same run.

    .venv/bin/python bench/store.py [--writers 64] [--seconds 3] [--body 600] [--dir PATH]
                                    [--postgres URL]

WRITERS coroutines call `record_and_apply` with no event (the callback row alone) back to back
for SECONDS each run (every call durable when it returns: WAL, synchronous=FULL, so each commit
is an fsync). Runs, each on a fresh file
in DIR (default: a temp dir beside the repo, on the same disk the server would use):

- group:    the SQLite store as shipped (one writer thread commits every waiting request at once)
- single:   the same store with group_commit=False (one transaction, one fsync per write)
- aiosqlite: the naive design, one aiosqlite connection, INSERT + COMMIT per write
- group+apply: `record_and_apply` (callback row + job event + job row per request), grouped

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
    asyncio.run(main(parser.parse_args()))
