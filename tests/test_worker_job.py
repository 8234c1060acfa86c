"""The worker's job flow: validation, storage, webhooks, errors; a scripted pipeline, real peers.

The pipeline here is a stand-in with the real one's interface (`run(request, job_id, progress)`),
so these tests exercise the worker against moto's S3 server and a loopback webhook receiver
whatever the stage backends do. End-to-end runs with the real pipeline are in test_worker_handler.py.
"""

from __future__ import annotations

import base64
import hashlib
import time
import urllib.request
import uuid

import numpy as np
import pytest
from standardwebhooks.webhooks import Webhook

from orfeas.errors import ConfigError, OutOfMemory, StageFailed, StageTimeout
from orfeas.progress import STAGE_SPANS, ProgressTracker
from orfeas.retry_policy import Backoff
from orfeas.settings import Settings
from orfeas.storage import LocalStore
from orfeas.storage.s3 import S3Store
from orfeas.types import Artifact, MeshStats, PipelineResult
from orfeas_worker.job import Throttle, Worker, worker_concurrency
from orfeas_worker.webhooks import WebhookSender
from tests.moto_server import ACCESS_KEY, REGION, SECRET_KEY, FaultPlan, FlakyProxy, s3_client

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
FAST = Backoff(attempts=3, initial_s=0.01, max_s=0.02)
TYPES = {"glb": "model/gltf-binary", "stl": "model/stl", "obj": "model/obj", "ply": "application/ply"}


class ScriptedPipeline:
    """Reports progress through every stage span and returns meshes derived from the job id, or raises."""

    def __init__(self, error: BaseException | None = None, size: int = 2048) -> None:
        self.error = error
        self.size = size
        self.calls = 0

    def run(self, request, *, job_id, progress, on_artifact=None):
        self.calls += 1
        tracker = ProgressTracker(progress)
        for stage in ("input", "background", "shape", "texture", "export"):
            for step in range(5):
                tracker.report(stage, step / 4)
        if self.error is not None:
            raise self.error
        artifacts = {}
        for fmt in request.formats:
            data = hashlib.shake_256(f"{job_id}-{fmt}".encode()).digest(self.size)
            artifacts[fmt] = Artifact(fmt, data, TYPES[fmt], hashlib.sha256(data).hexdigest())
            if on_artifact is not None and fmt == request.formats[0]:
                on_artifact(artifacts[fmt])  # the first streamed, the others left to the end
        return PipelineResult(
            job_id=job_id,
            backend="extrude",
            artifacts=artifacts,
            mesh=MeshStats(vertices=8, faces=12, watertight=True, extents_mm=(100.0, 100.0, 8.0)),
            timings={stage: 0.001 for stage in STAGE_SPANS} | {"total": 0.006},
            warnings=[],
            extra={"vram_peak_mb": {"shape": 12.5}, "shape": {"scale": np.float32(0.5), "box": np.arange(2)}},
        )


@pytest.fixture
def bucket(s3_endpoint):
    name = f"orfeas-{uuid.uuid4().hex[:12]}"
    s3_client(s3_endpoint).create_bucket(Bucket=name)
    return name


def _settings(**kw):
    return Settings(allow_private_webhooks=True, webhook_secret=SECRET, **kw)


def _s3_worker(endpoint, bucket, pipeline=None, **kw):
    settings = _settings(
        bucket_endpoint_url=endpoint,
        bucket_access_key_id=ACCESS_KEY,
        bucket_secret_access_key=SECRET_KEY,
        s3_bucket=bucket,
        s3_region=REGION,
    )
    store = S3Store.from_settings(settings)
    store.backoff = FAST
    return Worker(
        settings,
        store,
        pipeline=pipeline or ScriptedPipeline(),
        webhooks=WebhookSender(backoff=FAST, terminal_timeout_s=2.0),
        **kw,
    )


def _job(job_id="job-1", **inp):
    return {"id": job_id, "input": {"image": "aGVsbG8=", **inp}}


def _events(receiver):
    """What the receiver got; the worker returns only after its terminal delivery, so all is there."""
    return [Webhook(SECRET).verify(r.body, r.headers) for r in receiver.requests]


def test_a_completed_job_returns_stored_meshes_and_calls_back(s3_endpoint, bucket, webhook_receiver):
    """The result lists each mesh's key, fetchable URL, bytes, sha256, type; the webhook gets the same."""
    worker = _s3_worker(s3_endpoint, bucket)
    out = worker.run(_job(formats=["glb", "stl"], webhook=webhook_receiver.url))
    assert "error" not in out
    assert out["job_id"] == "job-1"
    assert set(out["meshes"]) == {"glb", "stl"}
    for fmt, mesh in out["meshes"].items():
        assert mesh["key"] == f"orfeas/job-1/model.{fmt}"
        assert mesh["content_type"] == TYPES[fmt]
        with urllib.request.urlopen(mesh["url"], timeout=10) as response:
            body = response.read()
        assert len(body) == mesh["bytes"]
        assert hashlib.sha256(body).hexdigest() == mesh["sha256"]
    assert out["timings"]["upload"] >= 0
    assert out["vram_peak_mb"] == {"shape": 12.5}
    assert out["shape"] == {"scale": 0.5, "box": [0, 1]}  # numpy values from a backend's meta, as JSON
    events = _events(webhook_receiver)
    assert events[-1]["type"] == "completed"
    assert events[-1]["output"] == out
    assert events[-1]["progress"]["fraction"] == 1.0
    assert all(e["type"] == "progress" for e in events[:-1])


def test_a_retried_job_leaves_one_object_per_format(s3_endpoint, bucket):
    """Running the same RunPod job twice overwrites its objects: one per format, no duplicates."""
    worker = _s3_worker(s3_endpoint, bucket)
    first = worker.run(_job("job-again", formats=["glb", "stl", "obj"]))
    second = worker.run(_job("job-again", formats=["glb", "stl", "obj"]))
    assert [m["key"] for m in first["meshes"].values()] == [m["key"] for m in second["meshes"].values()]
    listing = s3_client(s3_endpoint).list_objects_v2(Bucket=bucket)
    assert sorted(o["Key"] for o in listing["Contents"]) == [
        "orfeas/job-again/model.glb",
        "orfeas/job-again/model.obj",
        "orfeas/job-again/model.stl",
    ]


@pytest.mark.parametrize(
    ("inp", "expected"),
    [
        ({"image": "aGVsbG8=", "formats": ["zip"]}, "invalid_input: formats.0: must be one of"),
        ({"image": "aGVsbG8=", "quality": 11}, "invalid_input: quality:"),
        ({"image": "aGVsbG8=", "colour": "red"}, "invalid_input: colour: unknown field"),
        ({}, "invalid_input: image: give exactly one of image or prompt"),
        ({"image": "aGVsbG8=", "output": {"inline": "yes"}}, "invalid_input: output.inline:"),
        ({"image": "aGVsbG8=", "output": {"presign_seconds": 0}}, "invalid_input: output.presign_seconds:"),
        ({"image": "aGVsbG8=", "dimensions": {"width_mm": 10, "height_mm": 5}}, "invalid_input: dimensions:"),
        ("just a string", "invalid_input: input: expected a JSON object"),
    ],
)
def test_bad_input_is_a_coded_error_naming_the_field(tmp_path, inp, expected):
    """Bad input returns only {"error": "invalid_input: <field>: <why>"}; the pipeline never runs."""
    pipeline = ScriptedPipeline()
    worker = Worker(_settings(), LocalStore(tmp_path), pipeline=pipeline)
    out = worker.run({"id": "job-bad", "input": inp})
    assert list(out) == ["error"]
    assert out["error"].startswith(expected)
    assert "Traceback" not in out["error"]
    assert pipeline.calls == 0


def test_bad_input_with_a_valid_webhook_reports_failed(tmp_path, webhook_receiver):
    """The webhook of a refused input still hears `failed` with the invalid_input error and the field."""
    worker = Worker(_settings(), LocalStore(tmp_path), pipeline=ScriptedPipeline())
    out = worker.run(_job("job-refused", formats=["zip"], webhook={"url": webhook_receiver.url}))
    assert out["error"].startswith("invalid_input: formats.0")
    (event,) = _events(webhook_receiver)
    assert event["type"] == "failed"
    assert event["status"] == "FAILED"
    assert event["job_id"] == "job-refused"
    assert event["error"]["code"] == "invalid_input"
    assert event["error"]["field"] == "formats.0"


def test_a_private_webhook_is_refused_by_default(tmp_path, webhook_receiver):
    """Without ORFEAS_ALLOW_PRIVATE_WEBHOOKS a loopback webhook is invalid_input and is never called."""
    worker = Worker(Settings(), LocalStore(tmp_path), pipeline=ScriptedPipeline())
    out = worker.run(_job(webhook=webhook_receiver.url))
    # An address literal is judged as it is, as the picture fetch always did (never resolved).
    assert out["error"] == "invalid_input: webhook: address 127.0.0.1 is not public"
    assert webhook_receiver.wait_for(1, timeout=0.2) == []


@pytest.mark.parametrize(
    ("error", "refresh"),
    [
        (OutOfMemory("CUDA out of memory", stage="shape"), True),
        (StageTimeout("did not finish within 300.0 s", stage="shape"), True),  # its thread may still run
        (StageFailed("no foreground found", stage="background"), False),
    ],
)
def test_pipeline_errors_fail_the_job_and_fatal_ones_recycle_the_worker(
    tmp_path, webhook_receiver, error, refresh
):
    """A stage error returns its coded text; out_of_memory also asks RunPod to refresh the worker."""
    worker = Worker(
        _settings(),
        LocalStore(tmp_path),
        pipeline=ScriptedPipeline(error=error),
        webhooks=WebhookSender(backoff=FAST),
    )
    out = worker.run(_job(webhook=webhook_receiver.url))
    assert out["error"] == str(error)
    assert out["error"].startswith(f"{error.code}: {error.stage}: ")  # the code, then the stage named
    assert out.get("refresh_worker", False) is refresh
    assert not list(tmp_path.rglob("model.*"))
    event = _events(webhook_receiver)[-1]
    assert event["type"] == "failed"
    assert event["error"] == error.to_dict()


class AcceleratorError(RuntimeError):
    """Stands in for torch.AcceleratorError, which torch raises for CUDA faults (read by name)."""


def _wrapped_by_the_pipeline(error: BaseException) -> StageFailed:
    """A stage's error as the pipeline hands it on: StageFailed, the original as its cause."""
    try:
        raise StageFailed(f"{type(error).__name__}: {error}", stage="shape") from error
    except StageFailed as wrapped:
        return wrapped


@pytest.mark.parametrize(
    ("error", "refresh"),
    [
        (AcceleratorError("an illegal memory access was encountered"), True),
        (RuntimeError("CUDA error: device-side assert triggered"), True),
        (RuntimeError("CUBLAS_STATUS_EXECUTION_FAILED when calling cublasGemmEx"), True),
        (RuntimeError("the mesh has no faces"), False),
    ],
)
def test_a_device_fault_behind_a_stage_failure_recycles_the_worker(tmp_path, error, refresh):
    """A CUDA fault that reaches the worker as stage_failed still asks RunPod for a fresh worker."""
    wrapped = _wrapped_by_the_pipeline(error)
    worker = Worker(_settings(), LocalStore(tmp_path), pipeline=ScriptedPipeline(error=wrapped))
    out = worker.run(_job("job-device"))
    assert out["error"] == str(wrapped)
    assert out.get("refresh_worker", False) is refresh


def test_an_unexpected_exception_is_internal_error_without_traceback_and_the_worker_goes_on(tmp_path):
    """A stray exception becomes internal_error (worker refreshed); the same worker then completes a job."""
    pipeline = ScriptedPipeline(error=RuntimeError("boom"))
    worker = Worker(_settings(), LocalStore(tmp_path), pipeline=pipeline)
    out = worker.run(_job("job-boom"))
    assert out == {"error": "internal_error: RuntimeError: boom", "refresh_worker": True}
    pipeline.error = None
    assert "meshes" in worker.run(_job("job-fine"))


def test_storage_failure_is_reported_not_claimed_as_success(s3_endpoint, bucket, webhook_receiver):
    """When S3 keeps failing the job ends storage_error, the webhook hears failed, nothing says completed."""
    with FlakyProxy(s3_endpoint, FaultPlan(count=10_000, mode="503")) as proxy:
        worker = _s3_worker(proxy.endpoint, bucket)
        out = worker.run(_job("job-s3-down", webhook=webhook_receiver.url))
    assert out["error"].startswith("storage_error: storage: upload of orfeas/job-s3-down/model.")
    assert "refresh_worker" not in out
    events = _events(webhook_receiver)
    assert events[-1]["type"] == "failed"
    assert events[-1]["error"]["code"] == "storage_error"
    assert "completed" not in [e["type"] for e in events]


def test_a_failing_webhook_never_fails_the_job(tmp_path, webhook_receiver):
    """A receiver answering 500 to everything costs retries but the job still returns its meshes."""
    webhook_receiver.statuses = [500] * 50
    worker = Worker(
        _settings(), LocalStore(tmp_path), pipeline=ScriptedPipeline(), webhooks=WebhookSender(backoff=FAST)
    )
    out = worker.run(_job(webhook=webhook_receiver.url))
    assert set(out["meshes"]) == {"glb", "stl"}
    assert [r.status for r in webhook_receiver.requests][-FAST.attempts :] == [500] * FAST.attempts


def test_a_hanging_webhook_holds_the_worker_a_few_seconds_at_most(tmp_path, webhook_receiver):
    """With the production retry policy a receiver that never answers delays the job's return by
    the terminal budget only, and the result still goes back to RunPod."""
    webhook_receiver.gate.clear()
    worker = Worker(
        _settings(),
        LocalStore(tmp_path),
        pipeline=ScriptedPipeline(),
        webhooks=WebhookSender(terminal_budget_s=1.0),
    )
    started = time.monotonic()
    out = worker.run(_job(webhook=webhook_receiver.url))
    assert time.monotonic() - started < 1.0 + 1.0
    assert set(out["meshes"]) == {"glb", "stl"}


def test_runpod_progress_is_rate_limited(tmp_path):
    """25 progress reports inside a fraction of a second reach RunPod's progress_update once."""
    sent = []
    worker = Worker(
        _settings(),
        LocalStore(tmp_path),
        pipeline=ScriptedPipeline(),
        runpod_progress=lambda job, progress: sent.append((job["id"], progress)),
    )
    worker.run(_job("job-progress"))
    assert len(sent) == 1
    job_id, progress = sent[0]
    assert job_id == "job-progress"
    assert set(progress) == {"stage", "fraction", "eta_seconds"}


def test_throttle_lets_one_call_through_per_interval():
    """The throttle passes the first call and then one per interval of its clock."""
    now = [0.0]
    throttle = Throttle(1.0, clock=lambda: now[0])
    passed = []
    for _ in range(30):
        passed.append(throttle.ready())
        now[0] += 0.25
    assert passed.count(True) == 8
    assert passed[:5] == [True, False, False, False, True]


def test_inline_output_carries_small_meshes_in_base64(tmp_path):
    """output.inline adds each small mesh's bytes; a mesh over the limit is left out with a warning."""
    worker = Worker(_settings(), LocalStore(tmp_path), pipeline=ScriptedPipeline(size=1000))
    out = worker.run(_job("job-inline", formats=["stl", "obj"], output={"inline": True}))
    for mesh in out["meshes"].values():
        data = base64.b64decode(mesh["base64"])
        assert hashlib.sha256(data).hexdigest() == mesh["sha256"]
    big = Worker(_settings(), LocalStore(tmp_path), pipeline=ScriptedPipeline(size=3 * 1024 * 1024))
    out = big.run(_job("job-inline-big", formats=["stl"], output={"inline": True}))
    assert "base64" not in out["meshes"]["stl"]
    assert any(w.startswith("inline: stl left out") for w in out["warnings"])


def test_presign_seconds_from_the_input_sets_the_url_lifetime(s3_endpoint, bucket):
    """output.presign_seconds is the lifetime signed into each URL."""
    out = _s3_worker(s3_endpoint, bucket).run(_job("job-presign", output={"presign_seconds": 600}))
    assert all("X-Amz-Expires=600" in m["url"] for m in out["meshes"].values())


def test_without_a_bucket_meshes_go_to_the_output_directory(tmp_path):
    """The local store writes {dir}/{prefix}/{job}/model.{fmt} and returns file:// URLs to them."""
    worker = Worker(_settings(), LocalStore(tmp_path), pipeline=ScriptedPipeline())
    out = worker.run(_job("job-local"))
    for fmt, mesh in out["meshes"].items():
        path = tmp_path / "orfeas" / "job-local" / f"model.{fmt}"
        assert mesh["url"] == path.as_uri()
        assert hashlib.sha256(path.read_bytes()).hexdigest() == mesh["sha256"]


def test_a_job_id_that_could_escape_the_store_is_refused(tmp_path):
    """A job id with '/' or '..' is invalid_input on `id`, before anything runs."""
    pipeline = ScriptedPipeline()
    out = Worker(_settings(), LocalStore(tmp_path), pipeline=pipeline).run(_job("../../etc"))
    assert out["error"].startswith("invalid_input: id:")
    assert pipeline.calls == 0


def test_concurrency_is_one_with_gpu_models_and_the_setting_otherwise():
    """GPU backends share one device, so one job at a time; the weights-free path uses ORFEAS_CONCURRENCY."""
    assert worker_concurrency(Settings(concurrency=4)) == 4
    assert worker_concurrency(Settings(concurrency=4, auto_shape_backend="hunyuan")) == 1
    assert worker_concurrency(Settings(concurrency=4, texture_backend="hunyuan_paint")) == 1
    assert worker_concurrency(Settings(concurrency=4, background_backend="segmentation")) == 1
    assert worker_concurrency(Settings(concurrency=4, text_to_image_model="some/model")) == 1


def test_a_failing_progress_sink_does_not_fail_the_job(tmp_path):
    """If RunPod's progress call raises, the job still completes."""

    def broken(job, progress):
        raise RuntimeError("progress endpoint gone")

    worker = Worker(_settings(), LocalStore(tmp_path), pipeline=ScriptedPipeline(), runpod_progress=broken)
    assert "meshes" in worker.run(_job("job-progress-broken"))


@pytest.mark.parametrize("secret", ["whsec_***", "whsec_c2hvcnQ=", "whsec_not base64!"])
def test_a_malformed_default_webhook_secret_stops_the_worker_at_start(tmp_path, secret):
    """ORFEAS_WEBHOOK_SECRET that cannot sign is config_error naming the variable, before any job."""
    with pytest.raises(ConfigError) as info:
        Worker(Settings(webhook_secret=secret), LocalStore(tmp_path), pipeline=ScriptedPipeline())
    assert info.value.field == "ORFEAS_WEBHOOK_SECRET"


def test_meshes_upload_while_the_pipeline_still_exports(tmp_path):
    """A mesh handed over during the export is being stored before the pipeline returns."""

    class WatchingPipeline(ScriptedPipeline):
        seen_before_return: bool | None = None

        def run(self, request, *, job_id, progress, on_artifact=None):
            result = super().run(request, job_id=job_id, progress=progress)
            first = next(iter(result.artifacts.values()))
            assert on_artifact is not None
            on_artifact(first)
            target = tmp_path / "orfeas" / job_id / f"model.{first.format}"
            deadline = time.monotonic() + 10
            while not target.exists() and time.monotonic() < deadline:
                time.sleep(0.01)
            self.seen_before_return = target.exists()
            return result

    pipeline = WatchingPipeline()
    worker = Worker(_settings(), LocalStore(tmp_path), pipeline=pipeline)
    output = worker.run(_job("job-overlap", formats=["stl", "glb"]))
    assert pipeline.seen_before_return is True
    assert set(output["meshes"]) == {"stl", "glb"}
    for fmt, mesh in output["meshes"].items():
        data = (tmp_path / mesh["key"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == mesh["sha256"], fmt
