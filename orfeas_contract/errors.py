"""Every error ORFEAS raises on purpose, each with a stable `code` the CLI, the worker and the API return.

    OrfeasError                      code             meaning
    ├── ConfigError (ValueError)     config_error     a setting is malformed; names the variable
    ├── InvalidInput (ValueError)    invalid_input    the request is at fault; names the field
    ├── BackendUnavailable           backend_unavailable  the asked backend is not installed here
    ├── ModelUnavailable             model_unavailable    weights missing; names the model and path
    ├── StageFailed                  stage_failed     a required stage could not produce its output
    │   ├── StageTimeout (TimeoutError)  stage_timeout    a stage overran its time or the job deadline
    │   └── OutOfMemory (MemoryError)    out_of_memory    the device ran out of memory (fatal)
    └── StorageError (OSError)       storage_error    artifacts could not be stored or read

`str(error)` is `"<code>: <field or stage>: <message>"`, the text RunPod's `error` holds;
`to_dict()` is the `{"code", "message", "field"?}` the job-state document carries.
Lower libraries' errors (PIL, trimesh, boto3, torch) are translated into these where they enter.
"""

from __future__ import annotations

from typing import NotRequired  # pydantic reads TypedDicts from here before 3.12

from typing_extensions import TypedDict


class ErrorInfo(TypedDict):
    """An error as the job-state document carries it; errors may add keys (`stage`, `model`, `path`)."""

    code: str
    message: str
    field: NotRequired[str]


class OrfeasError(Exception):
    """Base of every deliberate ORFEAS error."""

    code: str = "internal_error"
    #: A fatal error leaves the worker process in a doubtful state (device memory, a stuck thread):
    #: the RunPod handler asks for the worker to be recycled after it.
    fatal: bool = False

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def __str__(self) -> str:
        where = f"{self.field}: " if self.field else ""
        return f"{self.code}: {where}{self.message}"

    def to_dict(self) -> ErrorInfo:
        """The error as the job-state document carries it."""
        data: ErrorInfo = {"code": self.code, "message": self.message}
        if self.field:
            data["field"] = self.field
        return data


class ConfigError(OrfeasError, ValueError):
    """A setting from the environment is malformed; `field` is the variable's name."""

    code = "config_error"


class InvalidInput(OrfeasError, ValueError):
    """The request is at fault; `field` names the offending field (dotted path)."""

    code = "invalid_input"


class BackendUnavailable(OrfeasError):
    """The requested backend cannot run in this installation (e.g. GPU extras missing)."""

    code = "backend_unavailable"


class ModelUnavailable(OrfeasError):
    """Model weights are not where they were looked for."""

    code = "model_unavailable"

    def __init__(self, message: str, *, model: str, path: str | None = None) -> None:
        super().__init__(message, field=model)
        self.model = model
        self.path = path

    def to_dict(self) -> ErrorInfo:
        data = super().to_dict()
        data["model"] = self.model  # type: ignore[typeddict-unknown-key]  # an extra key ErrorInfo allows
        if self.path:
            data["path"] = self.path  # type: ignore[typeddict-unknown-key]
        return data


class StageFailed(OrfeasError):
    """A required stage could not produce its output; `field` is the stage's name."""

    code = "stage_failed"

    def __init__(self, message: str, *, stage: str) -> None:
        super().__init__(message, field=stage)
        self.stage = stage

    def to_dict(self) -> ErrorInfo:
        data = super().to_dict()  # `field` is the stage too: the text form (`str(error)`) names it
        data["stage"] = self.stage  # type: ignore[typeddict-unknown-key]  # an extra key ErrorInfo allows
        return data


class StageTimeout(StageFailed, TimeoutError):
    """A stage overran its own time limit or the job's deadline."""

    code = "stage_timeout"
    # The overrunning stage may still be running in its thread: recycle the worker.
    fatal = True


class OutOfMemory(StageFailed, MemoryError):
    """The device (or host) ran out of memory during a stage."""

    code = "out_of_memory"
    fatal = True


class StorageError(OrfeasError, OSError):
    """Artifacts could not be written to, or read from, the artifact store."""

    code = "storage_error"
