"""`job["input"]` of a RunPod job: the orfeas request plus `webhook` and `output` options.

{"image": "...", "formats": ["glb", "stl"], ...,            # orfeas.request.JobRequest
 "webhook": "https://..." | {"url": "https://...", "secret": "whsec_..."},
 "output": {"inline": false, "presign_seconds": 3600}}
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from orfeas.errors import InvalidInput
from orfeas.request import JobRequest, invalid_input_from, parse_request
from orfeas.settings import Settings
from orfeas_contract.netguard import Resolver, system_resolver
from orfeas_worker.webhooks import WebhookTarget, parse_webhook


class OutputOptions(BaseModel):
    """How the result carries the meshes besides their stored copies."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    # Add base64 bodies of small meshes to the result (for callers that cannot reach the bucket).
    inline: bool = False
    # Lifetime of the presigned URLs; S3 caps SigV4 presigned URLs at 7 days.
    presign_seconds: int | None = Field(default=None, ge=1, le=7 * 24 * 3600)


@dataclass(frozen=True)
class WorkerInput:
    request: JobRequest
    webhook: WebhookTarget | None
    output: OutputOptions


def parse_worker_input(raw: Any, settings: Settings, *, resolver: Resolver = system_resolver) -> WorkerInput:
    """Validate a job's input; InvalidInput names the field at fault (`webhook.url`, `output.inline`, ...)."""
    if not isinstance(raw, dict):
        raise InvalidInput(f"expected a JSON object, got {type(raw).__name__}", field="input")
    fields = dict(raw)
    webhook_value = fields.pop("webhook", None)
    output_value = fields.pop("output", None)
    webhook = None
    if webhook_value is not None:
        webhook = parse_webhook(
            webhook_value,
            default_secret=settings.webhook_secret,
            allow_private=settings.allow_private_webhooks,
            resolver=resolver,
        )
    output = _parse_output(output_value)
    request = parse_request(fields)
    return WorkerInput(request=request, webhook=webhook, output=output)


def webhook_of_bad_input(
    raw: Any, settings: Settings, *, resolver: Resolver = system_resolver
) -> WebhookTarget | None:
    """The webhook of an input that failed validation, when it alone is valid (to report the failure)."""
    if not isinstance(raw, dict) or raw.get("webhook") is None:
        return None
    try:
        return parse_webhook(
            raw["webhook"],
            default_secret=settings.webhook_secret,
            allow_private=settings.allow_private_webhooks,
            resolver=resolver,
        )
    except InvalidInput:
        return None


def _parse_output(value: Any) -> OutputOptions:
    if value is None:
        return OutputOptions()
    if not isinstance(value, dict):
        raise InvalidInput(f"expected a JSON object, got {type(value).__name__}", field="output")
    try:
        return OutputOptions.model_validate(value)
    except ValidationError as exc:
        err = invalid_input_from(exc)
        raise InvalidInput(err.message, field=f"output.{err.field}") from None
