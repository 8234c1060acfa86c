"""The job-state document: one shape for a job wherever it travels.

    {"id": str, "status": JobStatus value,
     "progress": {"stage"?, "fraction"?, "eta_seconds"?, "message"?} | None,
     "output": {...} | None,                              # COMPLETED only
     "error": {"code": str, "message": str, "field"?: str} | None}   # failed states only

- The worker's webhook events are the document plus `type`, `job_id` and `attempt` (`JobEvent`).
- The callback server's job (`GET /v1/jobs/{id}`, `Job.to_api`) is the document plus
  `created_at`, `updated_at` and `last_callback` (`ApiJob`).
- The client webhook is `{"type": "job.<status>", "timestamp", "data": <the API job>}`.
- The worker's RunPod result is the document as RunPod needs it (`runpod_result`): RunPod marks a
  job FAILED only on a string `error` in the handler's return (its SDK pops `error` and sends it
  on as the envelope's `error`), so there the error is its text, `"<code>: <field>: <message>"`
  (`error_text`), the same as `str(OrfeasError)`. `state_from_runpod` reads an envelope back into
  the document, and the callback server stores every error it is told through `error_info`, so
  what it shows and sends on is always the dict.

The types are `TypedDict`s (the standard library: the callback server never loads pydantic);
`orfeas_contract.schema` turns them into the JSON schema docs/api.md shows.
"""

from __future__ import annotations

import json
import re
from typing import (
    Any,
    NotRequired,  # pydantic reads TypedDicts from here before 3.12
)

from typing_extensions import TypedDict

from orfeas_contract.errors import ErrorInfo, OrfeasError
from orfeas_contract.status import JobStatus

#: Code of an error a provider reported in a shape of its own (a bare string, another dict).
PROVIDER_ERROR = "provider_error"
#: Longest message kept from a provider's own error text.
MESSAGE_MAX = 1000


class Progress(TypedDict, total=False):
    """How far a job is: the worker sends stage, fraction and ETA; providers may send a message."""

    stage: str
    fraction: float
    eta_seconds: float | None
    message: str | int | float


class JobState(TypedDict):
    """The job-state document."""

    id: str
    status: JobStatus
    progress: Progress | None
    output: Any
    error: ErrorInfo | None


class JobEvent(JobState):
    """A worker webhook: the document, with the event's type and the run of the job it reports."""

    type: str  # orfeas_contract.events.EventType value
    job_id: str  # the same as `id`; the name servers before the document read
    attempt: NotRequired[str]  # this run of the job (RunPod's /retry runs the same id again)


class LastCallback(TypedDict, total=False):
    provider: str
    at: float
    status: str | None


class ApiJob(JobState):
    """The callback server's job: the document with its times and the last callback naming it."""

    created_at: float
    updated_at: float
    last_callback: LastCallback | None


class ClientWebhook(TypedDict):
    """What the callback server posts to a client's webhook when its job changes."""

    type: str  # "job.<status in lower case>"
    timestamp: float
    data: ApiJob


def _codes(cls: type[OrfeasError]) -> set[str]:
    found = {cls.code}
    for sub in cls.__subclasses__():
        found |= _codes(sub)
    return found


#: The stable codes of the error tree: a string error starting with one is ours, in `error_text` form.
KNOWN_CODES = frozenset(_codes(OrfeasError))
_TEXT = re.compile(r"(?P<code>[a-z][a-z0-9_]*): (?P<rest>.*)", re.S)
# A field is a dotted path (`formats.0`, `image`) or a variable's name; `internal_error` names none
# (its message starts with the exception's type, `ValueError: …`, which would read as one).
_FIELD = re.compile(r"(?P<field>[A-Za-z_][A-Za-z0-9_.\[\]-]*): (?P<message>.*)", re.S)


def error_text(error: ErrorInfo) -> str:
    """The error as one line of text, `"<code>: <field>: <message>"` (what RunPod's `error` holds)."""
    field = error.get("field")
    where = f"{field}: " if field else ""
    return f"{error['code']}: {where}{error['message']}"


def _from_text(text: str) -> ErrorInfo:
    match = _TEXT.fullmatch(text)
    if match is None or match["code"] not in KNOWN_CODES:
        stripped = text.strip()
        if stripped.startswith("{"):  # RunPod's SDK reports a handler's exception as JSON text
            try:
                parsed = error_info(json.loads(stripped))
            except ValueError:
                parsed = None
            if parsed is not None:
                return parsed
        return {"code": PROVIDER_ERROR, "message": text[:MESSAGE_MAX]}
    rest = match["rest"]
    found = _FIELD.fullmatch(rest) if match["code"] != "internal_error" else None
    if found is None:
        return {"code": match["code"], "message": rest}
    return {"code": match["code"], "message": found["message"], "field": found["field"]}


def error_info(value: Any) -> ErrorInfo | None:
    """Any reported error as the document's `{"code", "message", "field"?}` (None stays None).

    Ours already has that shape (a dict) or its text form; a provider's string becomes
    `provider_error` with the text as message; a dict without a string code or message gets them
    from its usual keys (`message`, `msg`, `error_message`, `detail`)."""
    if value is None:
        return None
    if isinstance(value, str):
        return _from_text(value)
    if isinstance(value, dict):
        code = value.get("code")
        message = next(
            (value[k] for k in ("message", "msg", "error_message", "detail") if value.get(k) is not None),
            None,
        )
        if isinstance(code, str) and code and isinstance(message, str):
            field = value.get("field")
            if field is None or isinstance(field, str):
                info: ErrorInfo = {**value, "code": code, "message": message}  # type: ignore[typeddict-item]
                return info  # keys of its own (stage, model, path) ride along
        text = message if message is not None else json.dumps(value, default=str)
        return {
            "code": code if isinstance(code, str) and code else PROVIDER_ERROR,
            "message": str(text)[:MESSAGE_MAX],
        }
    return {"code": PROVIDER_ERROR, "message": str(value)[:MESSAGE_MAX]}


def job_state(
    job_id: str,
    status: JobStatus,
    *,
    progress: Progress | None = None,
    output: Any = None,
    error: ErrorInfo | None = None,
) -> JobState:
    """Build a document; `output` belongs to COMPLETED, `error` to the failed states."""
    return {"id": job_id, "status": status, "progress": progress, "output": output, "error": error}


def runpod_result(state: JobState, *, refresh_worker: bool = False) -> dict[str, Any]:
    """What the RunPod handler returns for a finished `state`: its output when COMPLETED, else
    `{"error": <the error's text>}` (RunPod's FAILED), with `refresh_worker` when the process is in
    doubt (RunPod then replaces it)."""
    error = state["error"]
    if state["status"] is JobStatus.COMPLETED or error is None:
        output: dict[str, Any] = state["output"]
        return output
    answer: dict[str, Any] = {"error": error_text(error)}
    if refresh_worker:
        answer["refresh_worker"] = True
    return answer


def state_from_runpod(envelope: dict[str, Any]) -> JobState:
    """A RunPod `/status` envelope (`{"id", "status", "output"?, "error"?}`) as the document."""
    return job_state(
        str(envelope["id"]),
        JobStatus(envelope["status"]),
        output=envelope.get("output"),
        error=error_info(envelope.get("error")),
    )
