"""The RunPod serverless worker: `python -u handler.py` (the image's CMD).

Locally: `python handler.py --test_input "$(cat test_input.json)"` runs one job and exits;
`python handler.py --rp_serve_api --rp_api_port 8000` serves RunPod's /run, /runsync and
/status on localhost. Settings are read once, here at import: a malformed variable stops the
worker at start with the variable's name instead of failing every job.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import runpod

from orfeas.backend_names import WEIGHTS_FREE_SHAPES
from orfeas.errors import OrfeasError
from orfeas.settings import Settings
from orfeas_contract.redact import configure_logging
from orfeas_worker.job import Worker, worker_concurrency

SETTINGS = Settings.from_env()


def send_runpod_progress(job: dict[str, Any], progress: dict[str, Any]) -> None:
    """Progress to RunPod's job endpoint (already rate-limited to 1/s by the worker)."""
    runpod.serverless.progress_update(job, progress)


# Local runs have no RunPod job endpoint to take progress (webhooks still get it).
WORKER = Worker.from_settings(
    SETTINGS, runpod_progress=send_runpod_progress if SETTINGS.runpod_progress_url else None
)


async def handler(job: dict[str, Any]) -> dict[str, Any]:
    """Run one job. The pipeline blocks, so it runs in a thread: RunPod's event loop keeps
    taking jobs (when concurrency allows), sending heartbeats and answering stop signals."""
    return await asyncio.to_thread(WORKER.run, job)


def concurrency_modifier(current: int) -> int:
    """RunPod asks before taking jobs: 1 with GPU models, else ORFEAS_CONCURRENCY."""
    return worker_concurrency(SETTINGS)


def _preload() -> None:
    """With ORFEAS_EAGER_LOAD, load models at start so the first job does not pay for it.

    A model that cannot load is logged and the worker serves anyway: each job that needs it then
    fails with the same clear error (model_unavailable, backend_unavailable), where a worker that
    exits at start would be restarted by RunPod over and over while the queue waits."""
    if not SETTINGS.eager_load:
        return
    shapes = ["hunyuan"] if SETTINGS.auto_shape_backend == "hunyuan" else sorted(WEIGHTS_FREE_SHAPES)
    try:
        WORKER.pipeline.backends.preload(shapes)
    except OrfeasError as exc:
        logging.getLogger("orfeas.worker").error("eager load failed, jobs that need it will fail: %s", exc)


if __name__ == "__main__":
    configure_logging(SETTINGS.log_level)  # with redaction: no presigned query string or token is logged
    _preload()
    runpod.serverless.start(
        {
            "handler": handler,
            "concurrency_modifier": concurrency_modifier,
            "return_aggregate_stream": False,  # the handler returns one result, it does not stream
        }
    )
