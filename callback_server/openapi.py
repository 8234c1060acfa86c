"""The OpenAPI 3.1 document for every route (kept beside the routes; a test checks they match)."""

from __future__ import annotations

from functools import cache
from typing import Any

from orfeas_contract.status import JobStatus

JSON = "application/json"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}}


_STATIC_TYPES = (
    "text/html",
    "text/javascript",
    "text/css",
    "text/markdown",
    "image/png",
    "image/svg+xml",
    "image/x-icon",
)
_ERROR = _json(_ref("Error"), "An error")
_JOB_ID = {
    "name": "id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._:+=@-]{0,127}$"},
}
_UNAVAILABLE = _json(_ref("Error"), "The store (or the upstream) is not available; retry later")

_SCHEMAS: dict[str, Any] = {
    "JobSummary": {
        "type": "object",
        "required": ["id", "status"],
        "properties": {"id": {"type": "string"}, "status": {"enum": [s.value for s in JobStatus]}},
    },
    "SubmitRequest": {
        "type": "object",
        "required": ["input"],
        "additionalProperties": False,
        "properties": {
            "input": {"type": "object"},
            # No NUL: it cannot be stored (refused as invalid_input before anything goes upstream).
            "idempotency_key": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": "^[^\\x00]*$"},
            "webhook": {
                "type": "string",
                "format": "uri",
                "pattern": "^https?://[^/?#\\s\\x00]+[^\\x00]*$",
                "maxLength": 2048,
            },
        },
    },
    "CallbackAnswer": {
        "type": "object",
        "required": ["received"],
        "properties": {"received": {"const": True}, "job_id": {"type": "string"}},
    },
}

_CALLBACK_BODY = {
    "description": "Any body at all: JSON of any shape, form fields, binary, empty, over-size.",
    "required": False,
    "content": {
        JSON: {"schema": {}},
        "application/x-www-form-urlencoded": {"schema": {"type": "object"}},
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
    },
}
_CALLBACK_RESPONSES = {
    "200": _json(_ref("CallbackAnswer"), "Stored durably (and applied when authentic and understood)"),
    "503": _UNAVAILABLE,
}


def _callback_operation(op_id: str, with_provider: bool) -> dict[str, Any]:
    params: list[dict[str, Any]] = [
        {"name": "token", "in": "query", "required": False, "schema": {"type": "string"}},
        {
            "name": "ref",
            "in": "query",
            "required": False,
            "description": "The job reference whose derived token or secret authenticates the callback",
            "schema": {"type": "string"},
        },
        {"name": "X-Callback-Token", "in": "header", "required": False, "schema": {"type": "string"}},
    ]
    if with_provider:
        params.insert(
            0,
            {
                "name": "provider",
                "in": "path",
                "required": True,
                "description": "runpod, kie, replicate, orfeas or any other name",
                "schema": {"type": "string"},
            },
        )
    return {
        "post": {
            "operationId": op_id,
            "summary": "Receive a webhook callback; always answers 200 once it is stored",
            "parameters": params,
            "requestBody": _CALLBACK_BODY,
            "responses": _CALLBACK_RESPONSES,
        }
    }


SECURITY_SCHEME = "apiKey"
_UNAUTHORIZED = _json(_ref("Error"), "No API key, or not a valid one (api_key_required, api_key_invalid)")
_UNSUPPORTED = _json(_ref("Error"), "A body that is not application/json")


def _secured(paths: dict[str, Any]) -> dict[str, Any]:
    """Every /v1/* operation: the Bearer key required, 401 without it, 415 for a non-JSON body."""
    for path, ops in paths.items():
        if not path.startswith("/v1/"):
            continue
        for method, op in ops.items():
            op["security"] = [{SECURITY_SCHEME: []}]
            op["responses"]["401"] = _UNAUTHORIZED
            if method == "post":
                op["responses"]["415"] = _UNSUPPORTED
    return paths


def _contract_schemas() -> dict[str, Any]:
    """The API's Job and Error from the job-state document (orfeas_contract.schema), the one place
    their shape is written. pydantic is loaded here, when /openapi.json is first asked for, never on
    the server's request path."""
    from pydantic import TypeAdapter

    from orfeas_contract.errors import ErrorInfo
    from orfeas_contract.job_state import ApiJob

    schemas: dict[str, Any] = {}
    for name, kind in (("Job", ApiJob), ("ErrorInfo", ErrorInfo)):
        schema = TypeAdapter(kind).json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[name] = schema
    schemas["Error"] = {
        "type": "object",
        "required": ["error"],
        "properties": {"error": _ref("ErrorInfo"), "id": {"type": "string"}},
    }
    return schemas


@cache
def openapi_document() -> dict[str, Any]:
    document = _document()
    document["components"]["schemas"].update(_contract_schemas())
    _secured(document["paths"])
    document["components"]["securitySchemes"] = {
        SECURITY_SCHEME: {
            "type": "http",
            "scheme": "bearer",
            "description": "One of the server's API_KEYS, as 'Authorization: Bearer <key>'",
        }
    }
    return document


def _job_action(operation_id: str, summary: str, conflict: str) -> dict[str, Any]:
    """POST /v1/jobs/{id}/<action>: the job after it, 409 (`conflict`) when its state forbids the
    action, 502 when RunPod refuses or fails."""
    return {
        "post": {
            "operationId": operation_id,
            "summary": summary,
            "parameters": [_JOB_ID],
            "responses": {
                "200": _json(_ref("Job"), "The job"),
                "404": _ERROR,
                "409": _json(_ref("Error"), conflict),
                "502": _json(_ref("Error"), "The RunPod endpoint refused or failed"),
                "503": _UNAVAILABLE,
            },
        }
    }


def _document() -> dict[str, Any]:
    job = _json(_ref("Job"), "The job")
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "ORFEAS callback server",
            "version": "0.1.0",
            "description": "Receives webhook callbacks and serves the status of image-to-3D jobs.",
        },
        "paths": {
            "/": {
                "get": {
                    "operationId": "statusPage",
                    "summary": "The status page (HTML)",
                    "responses": {
                        "200": {"description": "The page", "content": {"text/html": {"schema": {}}}}
                    },
                }
            },
            "/static/{path}": {
                "get": {
                    "operationId": "staticFile",
                    "summary": "The status page's own files (script, styles, the vendored 3D viewer)",
                    "parameters": [
                        {"name": "path", "in": "path", "required": True, "schema": {"type": "string"}}
                    ],
                    "responses": {
                        "200": {
                            "description": "The file",
                            "content": {t: {"schema": {}} for t in _STATIC_TYPES},
                        },
                        "404": {"description": "No such file", "content": {"text/plain": {"schema": {}}}},
                    },
                }
            },
            "/healthz": {
                "get": {
                    "operationId": "healthz",
                    "summary": "Liveness",
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "required": ["status"],
                                "properties": {"status": {"const": "ok"}},
                            },
                            "Alive",
                        )
                    },
                }
            },
            "/readyz": {
                "get": {
                    "operationId": "readyz",
                    "summary": "Readiness: this instance's role and the store",
                    "responses": {
                        "200": _json(_ref("Ready"), "Ready"),
                        "503": _json(_ref("Ready"), "The store is not open or does not answer"),
                    },
                }
            },
            "/metrics": {
                "get": {
                    "operationId": "metrics",
                    "summary": "Prometheus metrics",
                    "responses": {
                        "200": {
                            "description": "Text format 0.0.4",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "operationId": "openapi",
                    "summary": "This document",
                    "responses": {"200": _json({"type": "object"}, "OpenAPI 3.1")},
                }
            },
            "/callbacks": _callback_operation("receiveCallback", with_provider=False),
            "/callbacks/{provider}": _callback_operation("receiveProviderCallback", with_provider=True),
            "/v1/jobs": {
                "get": {
                    "operationId": "listJobs",
                    "summary": "Recent jobs, newest first",
                    "parameters": [
                        {
                            "name": "limit",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "integer", "minimum": 1, "maximum": 200, "default": 50},
                        }
                    ],
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "required": ["jobs"],
                                "properties": {"jobs": {"type": "array", "items": _ref("Job")}},
                            },
                            "Jobs",
                        ),
                        "400": _ERROR,
                        "503": _UNAVAILABLE,
                    },
                },
                "post": {
                    "operationId": "submitJob",
                    "summary": "Submit a job to the RunPod endpoint",
                    "requestBody": {"required": True, "content": {JSON: {"schema": _ref("SubmitRequest")}}},
                    "responses": {
                        "200": _json(_ref("JobSummary"), "The running job this idempotency key names"),
                        "201": _json(_ref("JobSummary"), "Submitted"),
                        "400": _ERROR,
                        "409": _json(
                            _ref("Error"),
                            "The idempotency key names a running job of this API key with other input",
                        ),
                        "413": _ERROR,
                        "502": _json(_ref("Error"), "The RunPod endpoint refused or failed"),
                        "503": _UNAVAILABLE,
                    },
                },
            },
            "/v1/jobs/{id}": {
                "get": {
                    "operationId": "getJob",
                    "summary": "A job's status; ?wait=N long-polls for a change",
                    "parameters": [
                        _JOB_ID,
                        {
                            "name": "wait",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "number", "minimum": 0, "maximum": 60},
                        },
                    ],
                    "responses": {"200": job, "400": _ERROR, "404": _ERROR, "503": _UNAVAILABLE},
                }
            },
            "/v1/jobs/{id}/events": {
                "get": {
                    "operationId": "jobEvents",
                    "summary": "A job's changes as Server-Sent Events (event: job), until it is terminal",
                    "parameters": [_JOB_ID],
                    "responses": {
                        "200": {
                            "description": "The event stream",
                            "content": {"text/event-stream": {"schema": {"type": "string"}}},
                        },
                        "404": _ERROR,
                        "503": _UNAVAILABLE,
                    },
                }
            },
            "/v1/jobs/{id}/cancel": _job_action(
                "cancelJob", "Cancel a job upstream and here", "The job is already terminal"
            ),
            "/v1/jobs/{id}/retry": _job_action(
                "retryJob",
                "Retry a failed, timed-out or cancelled job (RunPod /retry) as its next attempt",
                "The job is not in a state that can be retried",
            ),
        },
        "components": {
            "schemas": {
                **_SCHEMAS,
                "Ready": {
                    "type": "object",
                    "required": ["role", "store"],
                    "properties": {
                        "role": {"enum": ["leader", "passive"]},
                        "store": {"enum": ["ok", "opening", "error"]},
                    },
                },
            }
        },
    }
