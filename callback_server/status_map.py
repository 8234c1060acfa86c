"""Map providers' status words onto the shared JobStatus, and read progress, output and error.

RunPod's values are JobStatus's own. KIE: waiting/queuing → IN_QUEUE, generating → IN_PROGRESS,
success → COMPLETED, fail → FAILED. Replicate: starting → IN_QUEUE, processing → IN_PROGRESS,
succeeded → COMPLETED, failed → FAILED, canceled → CANCELLED. Our worker's events carry
`type` (progress/completed/failed) and `status`. RunPod's local dev server posts `{"output": …}`
or `{"error": …}` with no status at all: that is a finished job.

KIE also signals the outcome without a state word: `callbackType` (`text`/`first` while the task
runs, `complete`, `error`), `successFlag` (0 running, 1 done, 2/3 failed), or only the envelope's
`code`/`msg` (`code: 200` is a finished task whose result is `data`; any other code a failure,
`msg` saying why). Every error comes out as the job-state document's `{"code", "message",
"field"?}`. The nodes are read in order: the one that held the task id, the root, the
root's `data`; the root need not be an object (an array or a JSON string holding one).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple, TypeGuard

from orfeas_contract.events import EventType
from orfeas_contract.job_state import error_info
from orfeas_contract.status import JobStatus

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
_MAX_RUN_ID = 64


class StatusUpdate(NamedTuple):
    status: JobStatus
    progress: dict[str, Any] | None = None
    output: Any = None
    error: Any = None
    word: str | None = None  # the provider's own status word, as sent (shown as the last callback)
    run_id: str | None = None  # our worker's id of the run that sent it (its events' `attempt`)


_KIE_CALLBACK_TYPES: dict[str, JobStatus] = {
    "text": JobStatus.IN_PROGRESS,
    "first": JobStatus.IN_PROGRESS,
    "complete": JobStatus.COMPLETED,
    "error": JobStatus.FAILED,
}
_KIE_SUCCESS_FLAGS: dict[int, JobStatus] = {
    0: JobStatus.IN_PROGRESS,
    1: JobStatus.COMPLETED,
    2: JobStatus.FAILED,
    3: JobStatus.FAILED,
}
# Keys whose value is shown as the provider's status word when nothing maps it.
_WORD_KEYS = ("status", "state", "callbackType", "type", "successFlag")
_WORD_MAX = 64


def status_from_word(value: Any) -> JobStatus | None:
    if isinstance(value, str):
        return _WORDS.get(value.strip().lower())
    return None


def _event_update(node: Mapping[str, Any]) -> StatusUpdate | None:
    """Our worker's event shape: {"type", "job_id", "attempt", "status", "progress", "output"|"error"}."""
    raw_type = node.get("type")
    event_type = _EVENT_TYPES.get(raw_type) if isinstance(raw_type, str) else None
    if event_type is None:
        return None
    status = status_from_word(node.get("status")) or event_type.status
    progress = node.get("progress")
    run_id = node.get("attempt")
    return StatusUpdate(
        status,
        progress=progress if isinstance(progress, dict) else None,
        output=node.get("output") if status is JobStatus.COMPLETED else None,
        error=node.get("error") if status.is_terminal and status is not JobStatus.COMPLETED else None,
        word=raw_type,
        # Ids are short (orfeas_worker/webhooks.py new_attempt_id); anything else is not a run id.
        run_id=run_id if isinstance(run_id, str) and 0 < len(run_id) <= _MAX_RUN_ID else None,
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
            word = node[key]
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
    return StatusUpdate(status, progress=progress, output=output, error=error, word=word)


def _kie_error(root: Mapping[str, Any], node: Mapping[str, Any]) -> dict[str, Any]:
    message = _first(node, _ERROR_KEYS) or root.get("msg") or "the provider reported a failure"
    return {"code": str(root.get("code", "failed")), "message": str(message)[:1000]}


def _kie_update(provider: str, root: Mapping[str, Any], node: Mapping[str, Any]) -> StatusUpdate | None:
    """KIE's outcome signals other than a state word (see the module docstring)."""
    for candidate in (node, root):
        kind = candidate.get("callbackType")
        status = _KIE_CALLBACK_TYPES.get(kind.strip().lower()) if isinstance(kind, str) else None
        if status is None:
            flag = candidate.get("successFlag")
            if isinstance(flag, int) and not isinstance(flag, bool):
                status = _KIE_SUCCESS_FLAGS.get(flag)
            kind = flag
        if status is not None:
            return _kie_outcome(status, root, node, str(kind))
    if provider not in ("kie", "generic") or "msg" not in root:
        return None
    code = root.get("code")
    if isinstance(code, str) and code.strip().isdigit():
        code = int(code)
    if not isinstance(code, int) or isinstance(code, bool):
        return None
    status = JobStatus.COMPLETED if code == 200 else JobStatus.FAILED
    return _kie_outcome(status, root, node, f"code {code}")


def _kie_outcome(
    status: JobStatus, root: Mapping[str, Any], node: Mapping[str, Any], word: str
) -> StatusUpdate:
    if status is JobStatus.COMPLETED:
        output = _first(node, _OUTPUT_KEYS) or node.get("info") or root.get("data")
        return StatusUpdate(status, output=output, word=word)
    if status is JobStatus.FAILED:
        return StatusUpdate(status, error=_kie_error(root, node), word=word)
    return StatusUpdate(status, progress={"message": str(root.get("msg") or word)[:1000]}, word=word)


def reported_word(body: Any, container: Mapping[str, Any] | None) -> str | None:
    """The provider's own status word in a callback whose status could not be mapped, if any."""
    for node in (container, body):
        if isinstance(node, Mapping):
            for key in _WORD_KEYS:
                value = node.get(key)
                if isinstance(value, (str, int)) and not isinstance(value, bool):
                    return str(value)[:_WORD_MAX]
    return None


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


def _is_object(value: Any) -> TypeGuard[Mapping[str, Any]]:
    # dict first: parsed JSON is always dicts, and an ABC check costs ten times more.
    return type(value) is dict or isinstance(value, Mapping)


def interpret(provider: str, body: Any, container: Mapping[str, Any] | None) -> StatusUpdate | None:
    """The status change a callback reports, or None when it names no status.

    `container` is the object that held the task id (read first, whatever the root's type)."""
    root = body if _is_object(body) else None
    nodes: list[Mapping[str, Any]] = []
    # The container is often the body itself: look at each node once.
    if container is not None:
        nodes.append(container)
    if root is not None and root is not container:
        nodes.append(root)
    data = root.get("data") if root is not None else None
    if _is_object(data) and data is not container:
        nodes.append(data)
    return _with_error_info(_interpret(provider, root, nodes))


def _interpret(
    provider: str, root: Mapping[str, Any] | None, nodes: list[Mapping[str, Any]]
) -> StatusUpdate | None:
    for node in nodes:
        update = _event_update(node) or _word_update(node)
        if update is not None:
            return update
    if nodes:
        update = _kie_update(provider, root if root is not None else nodes[0], nodes[0])
        if update is not None:
            return update
    if root is not None and provider in ("runpod", "generic"):
        return _bare_result(root)
    return None


def _with_error_info(update: StatusUpdate | None) -> StatusUpdate | None:
    """Every reported error in the job-state document's shape, `{"code", "message", "field"?}`:
    RunPod's string `error` (our `"<code>: <field>: <why>"`, or a provider's own text) included."""
    if update is None or update.error is None:
        return update
    return update._replace(error=error_info(update.error))
