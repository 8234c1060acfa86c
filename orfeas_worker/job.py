"""One RunPod job from input to result: validate, run the pipeline, store the meshes, call back.

The worker is built once per process (settings, pipeline with its loaded models, artifact store,
webhook sender) and `run(job)` is called for every job, possibly from several threads at once.
It never raises: every outcome is a job-state document (orfeas_contract.job_state) in the form
RunPod understands: the output, or `{"error": "<code>: <field>: <why>"}` (never a traceback), plus
`refresh_worker: true` after a fatal error (out of memory, a stage that overran, a
CUDA/cuBLAS/cuDNN fault, an unforeseen exception) so RunPod replaces a process whose device or
threads are in doubt.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from orfeas.errors import InvalidInput, OrfeasError
from orfeas.pipeline import Pipeline
from orfeas.progress import ProgressEvent
from orfeas.settings import Settings
from orfeas.storage import ArtifactStore, Uploads, check_job_id, open_artifact_store
from orfeas_contract.errors import ErrorInfo
from orfeas_contract.events import EventType
from orfeas_contract.job_state import Progress, job_state, runpod_result
from orfeas_contract.netguard import Resolver, system_resolver
from orfeas_contract.status import JobStatus
from orfeas_worker.job_input import WorkerInput, parse_worker_input, webhook_of_bad_input
from orfeas_worker.webhooks import JobWebhooks, WebhookSender

log = logging.getLogger("orfeas.worker")

# RunPod's job-done endpoint takes progress updates; one a second is ample for a status display
# and keeps a 100-event job from making 100 HTTP calls.
RUNPOD_PROGRESS_INTERVAL_S = 1.0
# `output.inline`: base64 grows a body by 4/3, and RunPod refuses results much over 10-20 MB.
INLINE_MAX_BYTES = 2 * 1024 * 1024
INLINE_TOTAL_BYTES = 6 * 1024 * 1024

RunpodProgress = Callable[[dict[str, Any], dict[str, Any]], None]  # (job, progress) like progress_update


class Throttle:
    """Lets a call through at most once per `interval_s`; thread-safe."""

    def __init__(self, interval_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval_s = interval_s
        self._clock = clock
        self._last: float | None = None
        self._lock = threading.Lock()

    def ready(self) -> bool:
        now = self._clock()
        with self._lock:
            if self._last is not None and now - self._last < self.interval_s:
                return False
            self._last = now
            return True


class Worker:
    """Everything a job needs that outlives it; `run` is the handler's body."""

    def __init__(
        self,
        settings: Settings,
        store: ArtifactStore,
        *,
        pipeline: Pipeline | None = None,
        webhooks: WebhookSender | None = None,
        runpod_progress: RunpodProgress | None = None,
        resolver: Resolver = system_resolver,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.store = store
        self.pipeline = pipeline or Pipeline(settings, object_reader=store.read_object)
        self.webhooks = webhooks or WebhookSender()
        self.runpod_progress = runpod_progress
        self.resolver = resolver
        self.clock = clock

    @classmethod
    def from_settings(cls, settings: Settings, *, runpod_progress: RunpodProgress | None = None) -> Worker:
        store = open_artifact_store(settings)
        prewarm = getattr(store, "prewarm", None)
        if prewarm is not None:
            prewarm()  # the S3 client builds while the worker waits for its first job
        return cls(settings, store, runpod_progress=runpod_progress)

    def run(self, job: dict[str, Any]) -> dict[str, Any]:
        """Run one job; returns the result, or `{"error": ...}` (and maybe `refresh_worker`)."""
        raw = job.get("input") if isinstance(job, dict) else None
        try:
            job_id = check_job_id(job.get("id", "") if isinstance(job, dict) else "")
            parsed = parse_worker_input(raw, self.settings, resolver=self.resolver)
        except InvalidInput as exc:
            self._report_bad_input(job, raw, exc)
            job_key = job.get("id") if isinstance(job, dict) else None
            return runpod_result(job_state(str(job_key), JobStatus.FAILED, error=exc.to_dict()))
        hooks = self.webhooks.for_job(parsed.webhook, job_id) if parsed.webhook else None
        try:
            output = self._run_valid(job, job_id, parsed, hooks)
        except OrfeasError as exc:
            log.info("job %s failed: %s", job_id, exc)
            return self._failed(hooks, job_id, exc.to_dict(), refresh=exc.fatal or is_device_fault(exc))
        except Exception as exc:  # a bug or an unforeseen library error: report it, keep serving
            log.exception("job %s failed unexpectedly", job_id)
            internal = OrfeasError(f"{type(exc).__name__}: {exc}")
            return self._failed(hooks, job_id, internal.to_dict(), refresh=True)
        if hooks is not None:
            hooks.finish(EventType.COMPLETED, output=output, progress=_done())
        return runpod_result(job_state(job_id, JobStatus.COMPLETED, output=output))

    def _run_valid(
        self, job: dict[str, Any], job_id: str, parsed: WorkerInput, hooks: JobWebhooks | None
    ) -> dict[str, Any]:
        throttle = Throttle(RUNPOD_PROGRESS_INTERVAL_S, self.clock)

        def on_progress(event: ProgressEvent) -> None:
            # Called from inside the stages: reporting progress must never fail the job.
            try:
                info = _info(event)
                if hooks is not None:
                    hooks.progress(info)
                if self.runpod_progress is not None and throttle.ready():
                    self.runpod_progress(job, dict(info))
            except Exception:
                log.warning("progress report for %s failed", job_id, exc_info=True)

        # Each mesh starts uploading as soon as it is written, while the next format is exported;
        # `upload` in the timings is what is left to wait for after the pipeline.
        with Uploads(self.store, job_id, presign_seconds=parsed.output.presign_seconds) as uploads:
            result = self.pipeline.run(
                parsed.request, job_id=job_id, progress=on_progress, on_artifact=uploads.start
            )
            started = self.clock()
            stored = uploads.results(result.artifacts)
            upload_s = self.clock() - started
        meshes = {fmt: item.as_dict() for fmt, item in stored.items()}
        if parsed.output.inline:
            _inline(meshes, result.artifacts, result.warnings)
        output = result.as_dict(meshes)
        output["timings"]["upload"] = round(upload_s, 4)
        return _json_safe(output)

    def _failed(
        self, hooks: JobWebhooks | None, job_id: str, error: ErrorInfo, *, refresh: bool
    ) -> dict[str, Any]:
        """The same error to the webhook (the dict) and to RunPod (its text: RunPod's FAILED)."""
        if hooks is not None:
            hooks.finish(EventType.FAILED, error=error)
        return runpod_result(job_state(job_id, JobStatus.FAILED, error=error), refresh_worker=refresh)

    def _report_bad_input(self, job: Any, raw: Any, exc: InvalidInput) -> None:
        """Tell the job's webhook, when it alone is valid, that the input was refused."""
        job_id = job.get("id") if isinstance(job, dict) else None
        target = webhook_of_bad_input(raw, self.settings, resolver=self.resolver)
        if target is None or not isinstance(job_id, str):
            return
        try:
            check_job_id(job_id)
        except InvalidInput:
            return
        self.webhooks.for_job(target, job_id).finish(EventType.FAILED, error=exc.to_dict())


# A CUDA context that saw one of these is unusable until the process exits (an illegal address or
# a device-side assert poisons every later kernel launch), whatever stage the error came through.
_DEVICE_FAULT_TYPES = frozenset({"AcceleratorError", "CudaError", "CUDAError"})
_DEVICE_FAULT_MARKERS = (
    "cuda error",
    "cublas_status_",
    "cudnn_status_",
    "cudnn error",
    "device-side assert",
    "illegal memory access",
    "unspecified launch failure",
    "nccl error",
)


def is_device_fault(exc: BaseException) -> bool:
    """True when `exc` or an error behind it is a fatal device error (torch is not imported here:
    the pipeline wraps a stage's RuntimeError in StageFailed, so the cause chain is read by name)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if type(current).__name__ in _DEVICE_FAULT_TYPES:
            return True
        text = str(current).lower()
        if any(marker in text for marker in _DEVICE_FAULT_MARKERS):
            return True
        current = current.__cause__ or current.__context__
    return False


def _json_safe(value: dict[str, Any]) -> dict[str, Any]:
    """The result as plain JSON types: RunPod and the webhook serialise it, and a numpy number from a
    backend's meta (np.float32, an array) would otherwise fail there, after the job has succeeded."""

    def plain(obj: Any) -> Any:
        for method in ("tolist", "item"):  # numpy arrays and scalars, torch tensors
            if callable(getattr(obj, method, None)):
                return getattr(obj, method)()
        if isinstance(obj, set | frozenset | tuple):
            return list(obj)
        return str(obj)

    result: dict[str, Any] = json.loads(json.dumps(value, default=plain))
    return result


def _info(event: ProgressEvent) -> Progress:
    return {"stage": event.stage, "fraction": round(event.fraction, 4), "eta_seconds": event.eta_seconds}


def _done() -> Progress:
    return {"stage": "export", "fraction": 1.0, "eta_seconds": 0.0}


def _inline(meshes: dict[str, dict[str, Any]], artifacts: dict[str, Any], warnings: list[str]) -> None:
    """Add base64 bodies for meshes small enough, smallest first, within the total budget."""
    total = 0
    for fmt in sorted(meshes, key=lambda f: artifacts[f].size):
        size = artifacts[fmt].size
        if size > INLINE_MAX_BYTES or total + size > INLINE_TOTAL_BYTES:
            warnings.append(f"inline: {fmt} left out ({size} bytes; limit {INLINE_MAX_BYTES} per mesh)")
            continue
        meshes[fmt]["base64"] = base64.b64encode(artifacts[fmt].data).decode("ascii")
        total += size


def worker_concurrency(settings: Settings) -> int:
    """Jobs one worker takes at once: 1 when a model backend shares the GPU, else ORFEAS_CONCURRENCY."""
    uses_gpu = (
        settings.auto_shape_backend == "hunyuan"
        or settings.background_backend == "segmentation"
        or settings.texture_backend == "hunyuan_paint"
        or settings.text_to_image_model is not None
    )
    return 1 if uses_gpu else settings.concurrency
