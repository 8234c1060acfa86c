"""Map providers' status words onto the shared JobStatus, and read progress, output and error.

RunPod's values are JobStatus's own. KIE: waiting/queuing → IN_QUEUE, generating → IN_PROGRESS,
success → COMPLETED, fail → FAILED. Replicate: starting → IN_QUEUE, processing → IN_PROGRESS,
succeeded → COMPLETED, failed → FAILED, canceled → CANCELLED. Our worker's events carry
`type` (progress/completed/failed) and `status`. RunPod's local dev server posts `{"output": …}`
or `{"error": …}` with no status at all: that is a finished job.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from orfeas.events import EventType
from orfeas.status import JobStatus

_WORDS: dict[str, JobStatus] = {
    # RunPod (and ours), case-insensitively
    **{s.value.lower(): s for s in JobStatus},
    # KIE
    "waiting": JobStatus.IN_QUEUE,
    "queuing": JobStatus.IN_QUEUE,
    "generating": JobStatus.IN_PROGRESS,
    "success": JobStatus.COMPLETED,
    "fail": JobStatus.FAILED,
    # Replicate
    "starting": JobStatus.IN_QUEUE,
    "processing": JobStatus.IN_PROGRESS,
    "succeeded": JobStatus.COMPLETED,
    "failed": JobStatus.FAILED,
    "canceled": JobStatus.CANCELLED,
    # common spellings
    "queued": JobStatus.IN_QUEUE,
    "pending": JobStatus.IN_QUEUE,
    "running": JobStatus.IN_PROGRESS,
    "in_progress": JobStatus.IN_PROGRESS,
    "completed": JobStatus.COMPLETED,
    "complete": JobStatus.COMPLETED,
    "cancelled": JobStatus.CANCELLED,
    "timed_out": JobStatus.TIMED_OUT,
    "timeout": JobStatus.TIMED_OUT,
    "error": JobStatus.FAILED,
}
# Looked up in a dict: EventType(value) raises (and formats a message) for every non-event body,
# which was a tenth of a callback's parsing time.
_EVENT_TYPES: dict[str, EventType] = {t.value: t for t in EventType}
_STATUS_KEYS = ("status", "state")
_OUTPUT_KEYS = ("output", "resultJson", "result", "results")
_ERROR_KEYS = ("error", "failMsg", "fail_msg", "errorMessage", "message")


@dataclass(frozen=True)
class StatusUpdate:
    status: JobStatus
    progress: dict[str, Any] | None = None
    output: Any = None
    error: Any = None


def status_from_word(value: Any) -> JobStatus | None:
    if isinstance(value, str):
        return _WORDS.get(value.strip().lower())
    return None


def _event_update(node: Mapping[str, Any]) -> StatusUpdate | None:
    """Our worker's event shape: {"type", "job_id", "status", "progress", "output"|"error"}."""
    raw_type = node.get("type")
    event_type = _EVENT_TYPES.get(raw_type) if isinstance(raw_type, str) else None
    if event_type is None:
        return None
    status = status_from_word(node.get("status")) or event_type.status
    progress = node.get("progress")
    return StatusUpdate(
        status,
        progress=progress if isinstance(progress, dict) else None,
        output=node.get("output") if status is JobStatus.COMPLETED else None,
        error=node.get("error") if status.is_terminal and status is not JobStatus.COMPLETED else None,
    )


def _first(node: Mapping[str, Any], keys: tuple[str, ...]) -> Any:
    for key in keys:
        if node.get(key) is not None:
            return node[key]
    return None


def _word_update(node: Mapping[str, Any]) -> StatusUpdate | None:
    status = None
    for key in _STATUS_KEYS:
        status = status_from_word(node.get(key))
        if status is not None:
            break
    if status is None:
        return None
    progress = None
    if status is JobStatus.IN_PROGRESS:
        # RunPod's progress_update puts the message into `output` while the job runs.
        raw = node.get("progress", node.get("output"))
        if isinstance(raw, dict):
            progress = raw
        elif raw is not None:
            progress = {"message": raw if isinstance(raw, (str, int, float)) else str(raw)[:1000]}
    output = _first(node, _OUTPUT_KEYS) if status is JobStatus.COMPLETED else None
    error = _first(node, _ERROR_KEYS) if status in (JobStatus.FAILED, JobStatus.TIMED_OUT) else None
    return StatusUpdate(status, progress=progress, output=output, error=error)


def _bare_result(node: Mapping[str, Any]) -> StatusUpdate | None:
    """RunPod's local server: `{"output": …}` for a finished job, `{"error": …}` for a failed one."""
    if node.get("error") is not None:
        return StatusUpdate(JobStatus.FAILED, error=node["error"])
    if "output" in node:
        output = node["output"]
        # A handler may report a failure inside its result rather than raising.
        if isinstance(output, Mapping) and output.get("error") is not None:
            return StatusUpdate(JobStatus.FAILED, error=output["error"])
        return StatusUpdate(JobStatus.COMPLETED, output=output)
    return None


def interpret(provider: str, body: Any, container: Mapping[str, Any] | None) -> StatusUpdate | None:
    """The status change a callback reports, or None when it names no status."""
    if not isinstance(body, Mapping):
        return None
    tried: list[int] = []  # the container is often the body itself: look at each node once
    for node in (container, body, body.get("data")):
        if not isinstance(node, Mapping) or id(node) in tried:
            continue
        tried.append(id(node))
        update = _event_update(node) or _word_update(node)
        if update is not None:
            return update
    if provider in ("runpod", "generic"):
        return _bare_result(body)
    return None
