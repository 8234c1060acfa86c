"""The durable store the callback server uses, on either database (store/sqlite.py, store/postgres.py).

Rules it keeps, on both:
- `record_and_apply` is durable (committed) when it returns: the server answers 200 only after it.
- `apply_event` changes a job only forward (JobStatus.can_move_to); a duplicate (same dedupe key)
  or stale event is recorded as such and changes nothing. Unknown job ids create the job.
- Leader-only writes pass the leader lease's `fence`; a write with a fence that is not the lease's
  current, unexpired one changes nothing (raises StaleFence). Lease times are the database's.
- No method blocks the event loop.
- Errors of the database drivers are translated into `orfeas_contract.errors.StorageError` (field
  DATABASE_URL) where they enter; `StaleFence` is the one other error a method raises.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable
from typing import Protocol, TypeVar

from callback_server.settings import ServerSettings
from callback_server.store import sql, steps
from callback_server.store.base import (
    ApplyOutcome,
    Delivery,
    Job,
    RecordedCallback,
    StatusEvent,
    StoredCallback,
)
from orfeas_contract.errors import StorageError

T = TypeVar("T")

#: Told which jobs changed; None: any may have (a listener was lost), so every waiter looks again.
OnChange = Callable[[Iterable[str] | None], None]


class Database(Protocol):
    """What a database adapter gives the Store."""

    poll_s: float  # how often a waiter looks for a change it may not be told of

    async def open(self, on_change: OnChange) -> None:
        """Connect and prepare the schema (schema.prepare_schema); tell `on_change` of changes."""
        ...

    async def close(self) -> None: ...

    async def write(self, plan: steps.PlanFactory[T]) -> T:
        """Run the plan in one committed transaction; its `Changed` jobs are told after the commit."""
        ...

    async def read(self, plan: steps.PlanFactory[T]) -> T: ...


class Store:
    """The job, callback, outbox and lease store on one database (see the module docstring).

    Semantics beyond the signatures:
    - `record_and_apply` stores the body cut to `max_body_bytes` and its full size (`body_size`
      when given: the size received, of which `body` may be only the first part); any query string
      and any bytes are taken: a query with NUL or non-UTF-8 characters is stored percent-encoded
      (`storable_text`) and the row's `note` says so, beside the caller's note. With an `event` it
      applies it in the same transaction; without one it marks the callback with `job_id` and
      `outcome` (e.g. "rejected", "no_task_id"), or leaves it unmarked when `outcome` is None: one
      durable write per request, and no crash window between record and apply.
    - `apply_event(..., callback_id=n)` also marks callback n with the job id and the outcome.
    - an APPLIED event on a job that names a client webhook queues that webhook's delivery
      (store/outbox.py) in the same transaction, so a crash cannot lose it.
    - `unapplied_callbacks` lists callbacks never marked (a crash between record and apply),
      oldest first, as StoredCallback rows (with the `accepted` verdict they were stored with).
    - `create_job` returns the stored job: the existing one when the id is known or when a
      non-terminal job already holds the same idempotency key (so a racing submit sees the winner).
      A known id that a callback created first gets the submission's missing fields
      (`merge_submitted`); if it is already terminal, its client webhook is queued then.
    - `mark_upstream_checked(id, at, min_interval=s)` claims the job's next upstream check: True
      (and the time stored) unless the job is terminal, unknown, or was checked less than `s`
      seconds before `at`, so replicas racing for one stale job call upstream once.
    - `find_by_idempotency_key` returns the newest job with that key, whatever its state.
    - `stale_jobs`: non-terminal jobs created after `created_after` whose row was neither updated
      nor checked upstream since `checked_before`, least recently checked first.
    - `wait_for_change` returns once the job's `updated_at` is above `since` (at once if it
      already is), or after `wait_s`, or when the store closes.
    - `acquire_lease` returns the holder's fence, or None while another holder's lease runs; the
      fence grows by one for every new grant (a new holder, or the same one after expiry).
      `renew_lease` is False once the lease expired or passed to another fence. `release_lease`
      ends the lease at once (the fence is kept, so the next grant is higher).
    """

    def __init__(self, db: Database, *, max_body_bytes: int = ServerSettings.max_body_bytes) -> None:
        self.db = db
        self.max_body_bytes = max_body_bytes
        self._open = False
        self._waiters: dict[str, set[asyncio.Event]] = {}

    # -- life cycle -------------------------------------------------------------------------------

    async def open(self) -> None:
        if self._open:
            return
        await self.db.open(self._notify)
        self._open = True

    async def close(self) -> None:
        self._open = False
        await self.db.close()
        self._notify(None)

    async def __aenter__(self) -> Store:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def ping(self) -> bool:
        try:
            return await self.db.read(sql.ping)
        except StorageError:
            return False

    # -- callbacks --------------------------------------------------------------------------------

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
        callback = sql.NewCallback.of(
            provider,
            headers,
            body,
            query,
            accepted=accepted,
            body_size=body_size,
            note=note,
            max_body_bytes=self.max_body_bytes,
        )
        if event is None:
            callback_id = await self.db.write(lambda: sql.insert_callback(callback, job_id, outcome))
            return RecordedCallback(callback_id, None)
        now = time.time()
        applied, recorded_id = await self.db.write(lambda: sql.apply_event(event, now, callback=callback))
        assert recorded_id is not None  # the plan stored the callback
        return RecordedCallback(recorded_id, applied)

    async def mark_callback(self, callback_id: int, *, job_id: str | None, outcome: str) -> None:
        await self.db.write(lambda: sql.mark_callback(callback_id, job_id, outcome))

    async def unapplied_callbacks(self, limit: int) -> list[StoredCallback]:
        return await self.db.read(lambda: sql.unapplied_callbacks(limit))

    # -- jobs -------------------------------------------------------------------------------------

    async def create_job(self, job: Job) -> Job:
        return await self.db.write(lambda: sql.create_job(job))

    async def get_job(self, job_id: str) -> Job | None:
        return await self.db.read(lambda: sql.get_job(job_id))

    async def find_by_idempotency_key(self, key: str) -> Job | None:
        return await self.db.read(lambda: sql.find_by_idempotency_key(key))

    async def apply_event(self, event: StatusEvent, *, callback_id: int | None = None) -> ApplyOutcome:
        now = time.time()
        outcome, _ = await self.db.write(lambda: sql.apply_event(event, now, callback_id=callback_id))
        return outcome

    async def mark_upstream_checked(self, job_id: str, at: float, *, min_interval: float = 0.0) -> bool:
        return await self.db.write(lambda: sql.mark_upstream_checked(job_id, at, min_interval))

    async def stale_jobs(self, *, checked_before: float, created_after: float, limit: int) -> list[Job]:
        return await self.db.read(lambda: sql.stale_jobs(checked_before, created_after, limit))

    async def expire_jobs(self, *, now: float, fence: int) -> list[str]:
        return await self.db.write(lambda: sql.expire_jobs(now, fence))

    async def recent_jobs(self, limit: int) -> list[Job]:
        return await self.db.read(lambda: sql.recent_jobs(limit))

    # -- change notification (long-poll, SSE) -----------------------------------------------------

    def _notify(self, job_ids: Iterable[str] | None) -> None:
        for job_id in self._waiters if job_ids is None else job_ids:
            for event in self._waiters.get(job_id, ()):
                event.set()

    async def wait_for_change(self, job_id: str, since: float, wait_s: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(0.0, wait_s)
        changed = asyncio.Event()
        # Registered before the first look, so a change committed in between still wakes us.
        self._waiters.setdefault(job_id, set()).add(changed)
        try:
            while self._open:
                try:
                    job = await self.get_job(job_id)
                except StorageError:
                    if not self._open:
                        return  # closed while waiting (shutdown): the caller answers with what it has
                    raise
                if job is not None and job.updated_at > since:
                    return
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), min(self.db.poll_s, remaining))
                changed.clear()
        finally:
            waiters = self._waiters.get(job_id)
            if waiters is not None:
                waiters.discard(changed)
                if not waiters:
                    del self._waiters[job_id]

    # -- client webhook outbox --------------------------------------------------------------------

    async def due_deliveries(self, now: float, limit: int) -> list[Delivery]:
        return await self.db.read(lambda: sql.due_deliveries(now, limit))

    async def finish_delivery(
        self, delivery_id: int, *, ok: bool, next_attempt_at: float | None, fence: int
    ) -> None:
        await self.db.write(lambda: sql.finish_delivery(delivery_id, ok, next_attempt_at, fence))

    # -- leases -----------------------------------------------------------------------------------

    async def acquire_lease(self, name: str, holder: str, ttl: float) -> int | None:
        return await self.db.write(lambda: sql.acquire_lease(name, holder, ttl))

    async def renew_lease(self, name: str, holder: str, fence: int, ttl: float) -> bool:
        return await self.db.write(lambda: sql.renew_lease(name, holder, fence, ttl))

    async def release_lease(self, name: str, holder: str, fence: int) -> None:
        await self.db.write(lambda: sql.release_lease(name, holder, fence))
