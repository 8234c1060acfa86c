"""The client webhook a job's change queues, decided inside the transaction that changes the job.

Queuing it there (not after the commit) means a crash between the two cannot lose it: the job's
new state and its delivery row are committed together, and the leader delivers from the outbox.
The message id is derived from the job and the change's dedupe key, so a replayed change queues
the same message once (`msg_id` is unique in the outbox).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from callback_server.store.base import Job


@dataclass(frozen=True)
class QueuedDelivery:
    job_id: str
    url: str
    body: bytes
    msg_id: str  # the Standard Webhooks webhook-id, stable across retries
    terminal: bool  # only terminal events are retried


def message_id(job_id: str, key: str) -> str:
    return "msg_" + hashlib.sha256(f"{job_id}\n{key}".encode()).hexdigest()[:32]


def delivery_body(job: Job, at: float) -> bytes:
    """`{"type": "job.<status>", "timestamp", "data": <the job as GET /v1/jobs/{id} shows it>}`."""
    payload = {"type": f"job.{job.status.value.lower()}", "timestamp": at, "data": job.to_api()}
    return json.dumps(payload, separators=(",", ":"), default=str).encode()


def delivery_for(job: Job, key: str, at: float) -> QueuedDelivery | None:
    """The delivery that `job`'s new state queues (None when the client named no webhook)."""
    if not job.client_webhook:
        return None
    return QueuedDelivery(
        job_id=job.id,
        url=job.client_webhook,
        body=delivery_body(job, at),
        msg_id=message_id(job.id, key),
        terminal=job.status.is_terminal,
    )
