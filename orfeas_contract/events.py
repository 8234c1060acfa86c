"""The worker's webhook events: the job-state document (orfeas_contract.job_state) with a type.

{"type": "progress" | "completed" | "failed", "id": str, "job_id": str (the same),
 "attempt": str (this run of the job), "status", "progress", "output" (completed only, else
 null), "error" ({"code", "message", "field"?}, failed only, else null)}
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from orfeas_contract.errors import ErrorInfo
from orfeas_contract.job_state import JobEvent, Progress
from orfeas_contract.status import JobStatus


class EventType(StrEnum):
    PROGRESS = "progress"
    COMPLETED = "completed"
    FAILED = "failed"

    @property
    def status(self) -> JobStatus:
        return _STATUS_OF[self]

    @property
    def is_terminal(self) -> bool:
        return self is not EventType.PROGRESS


_STATUS_OF = {
    EventType.PROGRESS: JobStatus.IN_PROGRESS,
    EventType.COMPLETED: JobStatus.COMPLETED,
    EventType.FAILED: JobStatus.FAILED,
}


def make_event(
    event_type: EventType,
    job_id: str,
    *,
    progress: Progress | None = None,
    output: dict[str, Any] | None = None,
    error: ErrorInfo | None = None,
    attempt: str | None = None,
) -> JobEvent:
    """Build an event body; `output` belongs to `completed`, `error` to `failed`."""
    if (output is not None) != (event_type is EventType.COMPLETED):
        raise ValueError("output is carried by completed events only, and always")
    if (error is not None) != (event_type is EventType.FAILED):
        raise ValueError("error is carried by failed events only, and always")
    event: JobEvent = {
        "type": event_type.value,
        "id": job_id,
        "job_id": job_id,
        "status": event_type.status,
        "progress": progress,
        "output": output,
        "error": error,
    }
    if attempt is not None:
        event["attempt"] = attempt
    return event
