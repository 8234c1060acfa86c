"""The job-state document: the worker's RunPod result, its webhook events, the API's job and the
client webhook all validate against the one schema (orfeas_contract.schema), errors as dicts."""

from __future__ import annotations

import asyncio
import json

import pytest
from pydantic import ValidationError
from runpod.serverless.modules.rp_job import run_job
from standardwebhooks.webhooks import Webhook

from callback_server.store.outbox import delivery_body
from orfeas.retry_policy import Backoff
from orfeas.settings import Settings
from orfeas.storage import LocalStore
from orfeas_contract import errors
from orfeas_contract.events import EventType, make_event
from orfeas_contract.job_state import (
    KNOWN_CODES,
    PROVIDER_ERROR,
    error_info,
    error_text,
    state_from_runpod,
)
from orfeas_contract.schema import json_schema, validate
from orfeas_worker.job import Worker
from orfeas_worker.webhooks import WebhookSender
from tests.cb_fakes import base_settings, close_harness, start_harness
from tests.test_worker_job import ScriptedPipeline

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def _worker(tmp_path, error=None):
    settings = Settings(allow_private_webhooks=True, webhook_secret=SECRET)
    return Worker(
        settings,
        LocalStore(tmp_path),
        pipeline=ScriptedPipeline(error=error),
        webhooks=WebhookSender(backoff=Backoff(attempts=2, initial_s=0.01, max_s=0.02)),
    )


def _runpod_envelope(worker, job):
    """The envelope RunPod's own SDK makes of the handler's return (its `run_job`), with the id and
    the status RunPod's /status adds (FAILED when the SDK passed an `error` on)."""
    result = asyncio.run(run_job(worker.run, job))
    return {"id": job["id"], "status": "FAILED" if result.get("error") else "COMPLETED", **result}


@pytest.mark.parametrize(
    "error",
    [
        errors.StageFailed("no foreground found", stage="background"),
        errors.OutOfMemory("CUDA out of memory", stage="shape"),
        errors.StorageError("upload failed: 503", field="storage"),
        errors.OrfeasError("ValueError: boom"),
    ],
)
def test_worker_result_and_its_failed_event_are_one_document(tmp_path, webhook_receiver, error):
    """A failed job's RunPod envelope reads back as a valid document whose error is the event's."""
    worker = _worker(tmp_path, error)
    job = {"id": "job-1", "input": {"image": "aGVsbG8=", "webhook": webhook_receiver.url}}
    envelope = _runpod_envelope(worker, job)
    assert isinstance(envelope["error"], str)  # RunPod's FAILED needs a string
    state = validate("state", state_from_runpod(envelope))
    last = webhook_receiver.requests[-1]
    event = validate("event", Webhook(SECRET).verify(last.body, dict(last.headers.items())))
    assert event["type"] == "failed"
    assert event["id"] == state["id"] == "job-1"
    assert state["error"] == {
        k: event["error"][k] for k in ("code", "message", "field") if k in event["error"]
    }
    assert state["error"]["code"] == error.code


def test_worker_completed_result_and_progress_events_are_documents(tmp_path, webhook_receiver):
    """A completed job's envelope and every webhook event it sent validate as documents."""
    worker = _worker(tmp_path)
    job = {"id": "job-2", "input": {"image": "aGVsbG8=", "webhook": webhook_receiver.url}}
    state = validate("state", state_from_runpod(_runpod_envelope(worker, job)))
    assert state["status"] == "COMPLETED"
    assert state["error"] is None
    assert state["output"]["meshes"]
    events = [Webhook(SECRET).verify(r.body, dict(r.headers.items())) for r in webhook_receiver.requests]
    assert [validate("event", e)["type"] for e in events][-1] == "completed"
    assert {e["type"] for e in events} == {"progress", "completed"}


@pytest.mark.asyncio
async def test_api_job_and_client_webhook_carry_the_error_as_a_dict(tmp_path):
    """A RunPod string error and a worker event's dict error both come out of the API and the
    client webhook as `{"code", "message", "field"?}` documents."""
    harness = await start_harness(tmp_path, base_settings())
    try:
        runpod = {"id": "rp-1", "status": "FAILED", "error": "invalid_input: image: not a picture"}
        event = make_event(
            EventType.FAILED, "rp-2", error=errors.StageFailed("no foreground", stage="background").to_dict()
        )
        kie = {"data": {"taskId": "rp-3", "state": "fail", "failMsg": "bad prompt"}}
        for provider, body in (("runpod", runpod), ("orfeas", event), ("kie", kie)):
            assert (await harness.post(f"/callbacks/{provider}", body)).status == 200
        jobs = {job_id: validate("api_job", await harness.job(job_id)) for job_id in ("rp-1", "rp-2", "rp-3")}
        assert jobs["rp-1"]["error"] == {
            "code": "invalid_input",
            "message": "not a picture",
            "field": "image",
        }
        assert jobs["rp-2"]["error"]["field"] == "background"
        assert jobs["rp-3"]["error"] == {"code": PROVIDER_ERROR, "message": "bad prompt"}
        stored = await harness.runtime.store.get_job("rp-1")
        webhook = validate("client_webhook", json.loads(delivery_body(stored, 1.0)))
        assert webhook["type"] == "job.failed"
        assert webhook["data"] == jobs["rp-1"]
    finally:
        await close_harness(harness)


def test_the_schema_refuses_a_string_error_and_an_unknown_status():
    """The document's error is a dict and its status one of JobStatus's values."""
    good = {"id": "j", "status": "FAILED", "progress": None, "output": None}
    validate("state", {**good, "error": {"code": "x", "message": "y"}})
    with pytest.raises(ValidationError, match="error"):
        validate("state", {**good, "error": "x: y"})
    with pytest.raises(ValidationError, match="status"):
        validate("state", {**good, "status": "DONE", "error": None})
    assert {"JobState", "JobEvent", "ApiJob", "ClientWebhook", "ErrorInfo"} <= set(json_schema()["$defs"])


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("stage_failed: shape: no mesh", {"code": "stage_failed", "message": "no mesh", "field": "shape"}),
        ("internal_error: ValueError: boom", {"code": "internal_error", "message": "ValueError: boom"}),
        (
            "backend_unavailable: torch is not installed",
            {"code": "backend_unavailable", "message": "torch is not installed"},
        ),
        ("Out of credits: top up", {"code": PROVIDER_ERROR, "message": "Out of credits: top up"}),
        (
            json.dumps({"error_type": "<class 'KeyError'>", "error_message": "'x'"}),
            {"code": PROVIDER_ERROR, "message": "'x'"},
        ),
        ({"message": "quota"}, {"code": PROVIDER_ERROR, "message": "quota"}),
        ({"code": 500}, {"code": PROVIDER_ERROR, "message": '{"code": 500}'}),
        (42, {"code": PROVIDER_ERROR, "message": "42"}),
        (None, None),
    ],
)
def test_error_info_reads_every_reported_error(value, expected):
    """Our text form, a provider's text, RunPod's exception JSON and odd dicts all become ErrorInfo."""
    assert error_info(value) == expected


def test_error_text_round_trips_every_code_of_the_tree():
    """`error_text` of an error's dict is `str(error)`, and `error_info` reads it back."""
    assert {"invalid_input", "stage_timeout", "out_of_memory", "storage_error"} <= KNOWN_CODES
    for error in (
        errors.InvalidInput("must be within [0, 60]", field="wait"),
        errors.ConfigError("expected int", field="ORFEAS_CONCURRENCY"),
        errors.StageTimeout("did not finish", stage="shape"),
        errors.ModelUnavailable("weights missing", model="hunyuan", path="/models/x"),
    ):
        data = error.to_dict()
        assert error_text(data) == str(error)
        assert error_info(str(error)) == {
            "code": data["code"],
            "message": data["message"],
            "field": data["field"],
        }
