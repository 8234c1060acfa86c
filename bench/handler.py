"""What the RunPod handler adds to a job, and what `import handler` adds to `import runpod`.

    .venv/bin/python bench/handler.py [--jobs 10] [--size 1024]

Jobs: the bundled sample scaled to SIZE² pixels, all five formats, weights-free backends, meshes
uploaded to moto's S3 server (its own process, started by the stack's supervisor) on loopback,
webhooks to a loopback receiver. For each job, overhead = handler wall time − the stages' own
compute (PipelineResult.timings): validation, stage threads, progress, uploads, presigning,
webhooks. Reported as a share of the job (goal < 5 %), split into uploads, the pipeline's own time
between stages, and the rest. Each mesh starts uploading as soon as it is written, while the next
format is exported, so `uploads` is the wait left once the pipeline is done. The five uploads are
also timed alone, one after another and in the thread pool, against the same server, to show what
each saves, and a refused input (validation and its `failed` webhook) is timed on its own (goal:
under a second).

Imports: fresh interpreters, `import runpod` alone vs `import handler` (goal: ≤ +0.3 s), in CPU
seconds, measured alternately, medians after one warm-up pair.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from stack.processes import Supervisor  # noqa: E402
from stack.services import ACCESS_KEY, BUCKET, REGION, SECRET_KEY, start_s3  # noqa: E402

STAGES = ("input", "text_to_image", "background", "shape", "texture", "export")


def _picture(size: int) -> str:
    from PIL import Image

    image = Image.open(ROOT / "orfeas" / "samples" / "emblem.png").convert("RGBA")
    image = image.resize((size, size), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return base64.b64encode(out.getvalue()).decode("ascii")


@contextlib.contextmanager
def _receiver() -> Iterator[str]:
    """A loopback webhook receiver answering 204; stopped however the run ends."""
    from tests.receivers import serve_receiver

    with serve_receiver("/hook", default_status=204) as receiver:
        yield receiver.url


def _import_seconds(env: dict[str, str], runs: int) -> tuple[float, float]:
    """Median CPU seconds of `import runpod` and `import handler`, each in a fresh interpreter.

    The two are measured alternately, so a busy machine slows both alike; the first pair only
    warms the disk cache and the bytecode.
    """
    times: dict[str, list[float]] = {"runpod": [], "handler": []}
    for i in range(runs + 1):
        for module in times:
            # CPU time, not wall time: on a shared machine other processes stretch wall time by
            # seconds, while the work an import does is what this compares.
            code = f"import time; t = time.process_time(); import {module}; print(time.process_time() - t)"
            done = subprocess.run(
                [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True
            )
            if i:
                times[module].append(float(done.stdout.strip().splitlines()[-1]))
    return statistics.median(times["runpod"]), statistics.median(times["handler"])


def _measure_jobs(count: int, size: int, hook_url: str) -> dict[str, Any]:
    """Jobs through `handler.handler` against the servers the environment names, then uploads alone."""
    import logging

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    import handler
    from orfeas.storage import Uploads
    from orfeas_worker.job_input import parse_worker_input

    job_input = {
        "image": _picture(size),
        "formats": ["glb", "stl", "obj", "ply", "3mf"],
        "webhook": hook_url,
    }
    asyncio.run(handler.handler({"id": "bench-warmup", "input": job_input}))  # backends built, imports done

    walls, overheads, uploads, orchestration = [], [], [], []
    last = None
    for i in range(count):
        job = {"id": f"bench-{i}", "input": job_input}
        started = time.perf_counter()
        output = asyncio.run(handler.handler(job))
        wall = time.perf_counter() - started
        if "error" in output:
            raise SystemExit(f"job failed: {output['error']}")
        compute = sum(output["timings"].get(stage, 0.0) for stage in STAGES)
        walls.append(wall)
        overheads.append(wall - compute)
        uploads.append(output["timings"]["upload"])
        orchestration.append(output["timings"]["total"] - compute)
        last = output

    # A refused input: validation only, the webhook told `failed` (goal: under a second).
    refused = []
    for i in range(count):
        bad = {"id": f"bench-bad-{i}", "input": {**job_input, "dimensions": {"width_mm": -1}}}
        started = time.perf_counter()
        answer = asyncio.run(handler.handler(bad))
        refused.append(time.perf_counter() - started)
        if not str(answer.get("error", "")).startswith("invalid_input: dimensions.width_mm:"):
            raise SystemExit(f"bad input not refused: {answer}")

    # The same five meshes, uploaded one after another, for comparison with the thread pool.
    result = handler.WORKER.pipeline.run(parse_worker_input(job_input, handler.SETTINGS).request)
    store = handler.WORKER.store
    sequential, parallel = [], []
    for i in range(count):
        t = time.perf_counter()
        for art in result.artifacts.values():
            store.put(f"seq-{i}", art)
        sequential.append(time.perf_counter() - t)
        t = time.perf_counter()
        with Uploads(store, f"par-{i}") as pool:
            pool.results(result.artifacts)
        parallel.append(time.perf_counter() - t)
    assert last is not None
    return {
        "walls": walls,
        "overheads": overheads,
        "uploads": uploads,
        "orchestration": orchestration,
        "refused": refused,
        "sequential": sequential,
        "parallel": parallel,
        "last": last,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--import-runs", type=int, default=5)
    args = parser.parse_args()

    # moto's S3 server in its own process (S3 is another machine: in this one it would share the
    # GIL with the worker, and its request handling would be billed to the uploads), started and
    # stopped however the run ends by the stack's supervisor, with the stack's bucket and keys.
    with tempfile.TemporaryDirectory() as logs, Supervisor(logs) as sup, _receiver() as hook_url:
        endpoint = start_s3(sup)
        env = {
            "BUCKET_ENDPOINT_URL": endpoint,
            "BUCKET_ACCESS_KEY_ID": ACCESS_KEY,
            "BUCKET_SECRET_ACCESS_KEY": SECRET_KEY,
            "ORFEAS_S3_BUCKET": BUCKET,
            "ORFEAS_S3_REGION": REGION,
            "ORFEAS_ALLOW_PRIVATE_WEBHOOKS": "1",
            "ORFEAS_WEBHOOK_SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        }
        os.environ.update(env)
        jobs = _measure_jobs(args.jobs, args.size, hook_url)

    child_env = {**os.environ, **env}
    runpod_s, handler_s = _import_seconds(child_env, args.import_runs)

    wall = statistics.median(jobs["walls"])
    overhead = statistics.median(jobs["overheads"])
    last = jobs["last"]
    sizes = {fmt: mesh["bytes"] for fmt, mesh in last["meshes"].items()}
    print(f"picture {args.size}x{args.size}, formats {', '.join(sizes)} ({sum(sizes.values())} bytes in all)")
    print(f"mesh: {last['mesh']['faces']} faces; backend {last['backend']}; median of {args.jobs} jobs")
    print(f"job wall time through the handler   {wall * 1000:8.1f} ms")
    print(f"stages' own compute                 {(wall - overhead) * 1000:8.1f} ms")
    share = overhead / wall * 100
    print(f"handler overhead                    {overhead * 1000:8.1f} ms = {share:.2f} % of the job")
    upload, orch = statistics.median(jobs["uploads"]), statistics.median(jobs["orchestration"])
    own = overhead - upload - orch
    print(f"  uploads left after the export     {upload * 1000:8.1f} ms = {upload / wall * 100:.2f} %")
    print(f"  pipeline between its stages       {orch * 1000:8.1f} ms = {orch / wall * 100:.2f} %")
    print(f"  the rest (validation, webhooks)   {own * 1000:8.1f} ms = {own / wall * 100:.2f} %")
    sequential, parallel = statistics.median(jobs["sequential"]), statistics.median(jobs["parallel"])
    print(
        f"uploads one by one vs thread pool   {sequential * 1000:8.1f} ms vs "
        f"{parallel * 1000:.1f} ms ({sequential / parallel:.2f}x)"
    )
    refused = statistics.median(jobs["refused"])
    print(f"bad input refused (webhook told)    {refused * 1000:8.1f} ms")
    print(f"import runpod                       {runpod_s * 1000:8.1f} ms of CPU")
    added = (handler_s - runpod_s) * 1000
    print(f"import handler                      {handler_s * 1000:8.1f} ms of CPU (+{added:.1f} ms)")


if __name__ == "__main__":
    main()
