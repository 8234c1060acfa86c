"""The one event shape sent by the worker's webhooks and understood by the callback server.

{"type": "progress" | "completed" | "failed",
 "job_id": str,
 "attempt": str,   # this run of the job (RunPod's /retry runs the same id again); worker events
 "status": JobStatus value,
 "progress": {"stage": str, "fraction": float, "eta_seconds": float | None} | None,
 "output": {...}   # completed only
 "error": {"code": str, "message": str, ...}   # failed only
}
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, TypedDict

from orfeas.status import JobStatus


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


class ProgressInfo(TypedDict):
    stage: str
    fraction: float
    eta_seconds: float | None


class JobEvent(TypedDict, total=False):
    type: str
    job_id: str
    attempt: str
    status: str
    progress: ProgressInfo | None
    output: dict[str, Any]
    error: dict[str, Any]


def make_event(
    event_type: EventType,
    job_id: str,
    *,
    progress: ProgressInfo | None = None,
    output: dict[str, Any] | None = None,
    error: dict[str, Any] | None = None,
    attempt: str | None = None,
) -> JobEvent:
    """Build an event body; `output` belongs to `completed`, `error` to `failed`."""
    if (output is not None) != (event_type is EventType.COMPLETED):
        raise ValueError("output is carried by completed events only, and always")
    if (error is not None) != (event_type is EventType.FAILED):
        raise ValueError("error is carried by failed events only, and always")
    event: JobEvent = {
        "type": event_type.value,
        "job_id": job_id,
        "status": event_type.status.value,
        "progress": progress,
    }
    if attempt is not None:
        event["attempt"] = attempt
    if output is not None:
        event["output"] = output
    if error is not None:
        event["error"] = error
    return event
