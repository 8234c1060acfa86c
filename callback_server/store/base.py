"""The durable store's contract, kept by the SQLite (embedded) and PostgreSQL (replicas) stores.

Rules every implementation keeps:
- `record_callback` is durable (committed) when it returns: the server answers 200 only after it.
- `apply_event` changes a job only forward (JobStatus.can_move_to); a duplicate (same dedupe key)
  or stale event is recorded as such and changes nothing. Unknown job ids create the job.
- Leader-only writes pass the leader's `epoch`; a write with an epoch older than the lease's
  current one changes nothing (returns False / raises StaleEpoch).
- No method blocks the event loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from orfeas.status import JobStatus


class StaleEpoch(Exception):
    """A leader-only write came from an instance that is no longer the leader."""


class ApplyOutcome(StrEnum):
    CREATED = "created"  # the job was unknown; created in this state
    APPLIED = "applied"  # moved the job forward (or updated progress within IN_PROGRESS)
    DUPLICATE = "duplicate"  # same dedupe key seen before: recorded, not applied
    STALE = "stale"  # would move the job backwards or out of a terminal state: not applied


@dataclass(frozen=True)
class Job:
    id: str
    status: JobStatus
    created_at: float  # unix seconds
    updated_at: float
    progress: dict[str, Any] | None = None
    output: Any = None
    error: Any = None
    provider: str = "runpod"
    input: dict[str, Any] | None = None
    idempotency_key: str | None = None
    client_webhook: str | None = None
    retry_epoch: int = 0
    upstream_checked_at: float | None = None  # last RunPod /status call for this job
    deadline_at: float | None = None  # past it, a non-terminal job becomes TIMED_OUT

    def to_api(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status.value,
            "progress": self.progress,
            "output": self.output,
            "error": self.error,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


@dataclass(frozen=True)
class StatusEvent:
    """A status change for one job, from a callback, an upstream poll or the reconciler."""

    job_id: str
    status: JobStatus
    dedupe_key: str  # webhook-id header, else sha256 of the body
    progress: dict[str, Any] | None = None
    output: Any = None
    error: Any = None
    provider: str = "runpod"
    retry_epoch: int | None = None  # RunPod /retry: the one way back, with a higher epoch


@dataclass(frozen=True)
class Delivery:
    """A client webhook to deliver (outbox row)."""

    id: int
    job_id: str
    url: str
    body: bytes
    msg_id: str  # webhook-id, stable across retries
    attempts: int
    terminal: bool  # only terminal events are retried
    next_attempt_at: float
    extra: dict[str, Any] = field(default_factory=dict)


class Store(Protocol):
    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def ping(self) -> bool: ...

    # Callbacks: raw, durable, before the 200.
    async def record_callback(
        self, provider: str, headers: dict[str, str], body: bytes, query: str, *, accepted: bool
    ) -> int: ...
    async def mark_callback(self, callback_id: int, *, job_id: str | None, outcome: str) -> None: ...
    async def unapplied_callbacks(self, limit: int) -> list[tuple[int, str, dict[str, str], bytes, str]]: ...

    # Jobs
    async def create_job(self, job: Job) -> Job: ...
    async def get_job(self, job_id: str) -> Job | None: ...
    async def find_by_idempotency_key(self, key: str) -> Job | None: ...
    async def apply_event(self, event: StatusEvent, *, callback_id: int | None = None) -> ApplyOutcome: ...
    async def mark_upstream_checked(self, job_id: str, at: float) -> None: ...
    async def stale_jobs(self, *, checked_before: float, created_after: float, limit: int) -> list[Job]: ...
    async def expire_jobs(self, *, now: float, epoch: int) -> list[str]: ...
    async def recent_jobs(self, limit: int) -> list[Job]: ...

    # Change notification (long-poll, SSE): returns when job_id changed or wait_s passed.
    async def wait_for_change(self, job_id: str, since: float, wait_s: float) -> None: ...

    # Client webhook outbox
    async def enqueue_delivery(
        self, job_id: str, url: str, body: bytes, msg_id: str, terminal: bool
    ) -> None: ...
    async def due_deliveries(self, now: float, limit: int) -> list[Delivery]: ...
    async def finish_delivery(
        self, delivery_id: int, *, ok: bool, next_attempt_at: float | None, epoch: int
    ) -> None: ...

    # Leader lease: (name, holder, epoch, expires_at)
    async def acquire_lease(self, name: str, holder: str, ttl: float) -> int | None: ...
    async def renew_lease(self, name: str, holder: str, epoch: int, ttl: float) -> bool: ...
    async def release_lease(self, name: str, holder: str, epoch: int) -> None: ...
