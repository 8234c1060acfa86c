"""The job-state document's JSON schema, generated from `orfeas_contract.job_state` with pydantic.

`python -m orfeas_contract.schema` prints it (docs/api.md, "The job-state document", shows it);
`validate(kind, value)` checks a document of one kind (tests, and any client that wants to).
pydantic is imported here only: the callback server and the worker's hot paths build plain dicts.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import TypeAdapter

from orfeas_contract.job_state import ApiJob, ClientWebhook, JobEvent, JobState

ADAPTERS: dict[str, TypeAdapter[Any]] = {
    "state": TypeAdapter(JobState),
    "event": TypeAdapter(JobEvent),
    "api_job": TypeAdapter(ApiJob),
    "client_webhook": TypeAdapter(ClientWebhook),
}


def validate(kind: str, value: Any) -> Any:
    """`value` checked as a document of `kind` (state, event, api_job, client_webhook); raises
    pydantic's ValidationError naming the key at fault."""
    return ADAPTERS[kind].validate_python(value, strict=False)


def json_schema() -> dict[str, Any]:
    """One schema holding every kind under `$defs`, keyed by the kind's type name."""
    defs: dict[str, Any] = {}
    for adapter in ADAPTERS.values():
        schema = adapter.json_schema()
        defs.update(schema.pop("$defs", {}))
        defs[schema["title"]] = schema
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$defs": dict(sorted(defs.items()))}


if __name__ == "__main__":
    print(json.dumps(json_schema(), indent=2))
