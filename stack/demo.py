"""`python -m stack`: bring up the stack, run the bundled sample through it, download the meshes.

Everything goes under demo-output/ (logs, the database, model.glb, model.stl). Exit status 0 when
the job completed and the downloads match their checksums; 1 with a clear message otherwise.
Every process started is stopped on the way out, also on Ctrl-C and on failure.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any, TextIO

from stack.processes import ProcessError, Supervisor
from stack.services import ROOT, start_stack

SAMPLE = ROOT / "orfeas" / "samples" / "emblem.png"
DOWNLOADS = ("glb", "stl")
TERMINAL = frozenset({"COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"})
WAIT_S = 20
BAR_WIDTH = 30
LOOPBACK = "127.0.0.1,localhost"
# The stack is on loopback: requests go there directly, whatever proxy the environment names.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class DemoError(RuntimeError):
    pass


def http_json(
    method: str, url: str, body: Any = None, timeout_s: float = 30.0, *, api_key: str | None = None
) -> tuple[int, Any]:
    """One JSON call; `api_key` goes as the Bearer header the job API (/v1/*) needs."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    if api_key is not None:
        request.add_header("Authorization", f"Bearer {api_key}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with _DIRECT.open(request, timeout=timeout_s) as answer:
            return answer.status, json.loads(answer.read() or b"null")
    except urllib.error.HTTPError as exc:
        text = exc.read().decode("utf-8", "replace")
        try:
            return exc.code, json.loads(text)
        except ValueError:
            return exc.code, {"error": text}


def submit(
    server_url: str, picture: Path, key: str, job_input: dict[str, Any] | None = None, *, api_key: str
) -> dict[str, Any]:
    body_input = {"image": base64.b64encode(picture.read_bytes()).decode(), "formats": ["glb", "stl"]}
    body_input.update(job_input or {})
    status, answer = http_json(
        "POST", f"{server_url}/v1/jobs", {"input": body_input, "idempotency_key": key}, api_key=api_key
    )
    if status not in (200, 201):
        raise DemoError(f"POST /v1/jobs answered {status}: {answer}")
    return answer


def progress_of(job: dict[str, Any]) -> tuple[str, float, float | None]:
    """(stage, fraction 0..1, eta seconds) from the job's progress, whatever its exact shape."""
    progress = job.get("progress") or {}
    if not isinstance(progress, dict):
        progress = {}
    fraction = progress.get("fraction", progress.get("progress", 0.0))
    try:
        fraction = float(fraction)
    except (TypeError, ValueError):
        fraction = 0.0
    if fraction > 1.0:
        fraction /= 100.0
    if job.get("status") == "COMPLETED":
        fraction = 1.0
    eta = progress.get("eta_s", progress.get("eta_seconds"))
    stage = str(progress.get("stage") or job.get("status", "").lower())
    return stage, max(0.0, min(1.0, fraction)), eta if isinstance(eta, (int, float)) else None


def render_bar(job: dict[str, Any]) -> str:
    stage, fraction, eta = progress_of(job)
    filled = round(fraction * BAR_WIDTH)
    bar = "#" * filled + "-" * (BAR_WIDTH - filled)
    eta_text = f" eta {eta:.0f}s" if eta is not None and job.get("status") not in TERMINAL else ""
    return f"[{bar}] {fraction * 100:5.1f}% {job.get('status', '?'):<11} {stage}{eta_text}"


class ProgressPrinter:
    """A single updating line on a terminal; one plain line per change otherwise."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.tty = out.isatty()
        self.last = ""

    def show(self, job: dict[str, Any]) -> None:
        line = render_bar(job)
        if line == self.last:
            return
        if self.tty:
            self.out.write("\r" + line.ljust(len(self.last)))
        else:
            self.out.write(line + "\n")
        self.out.flush()
        self.last = line

    def done(self) -> None:
        if self.tty and self.last:
            self.out.write("\n")
            self.out.flush()


def follow(
    server_url: str, job_id: str, printer: ProgressPrinter, timeout_s: float, *, api_key: str
) -> dict[str, Any]:
    """Long-poll GET /v1/jobs/{id}?wait= until the job is terminal or `timeout_s` passes."""
    deadline = time.monotonic() + timeout_s
    job: dict[str, Any] = {"id": job_id, "status": "IN_QUEUE"}
    while True:
        status, answer = http_json(
            "GET", f"{server_url}/v1/jobs/{job_id}?wait={WAIT_S}", timeout_s=WAIT_S + 10, api_key=api_key
        )
        if status != 200:
            raise DemoError(f"GET /v1/jobs/{job_id} answered {status}: {answer}")
        job = answer
        printer.show(job)
        if job.get("status") in TERMINAL:
            printer.done()
            return job
        if time.monotonic() >= deadline:
            printer.done()
            raise DemoError(f"job {job_id} still {job.get('status')} after {timeout_s:g} s")


def download(url: str, target: Path, sha256: str, size: int | None) -> None:
    with _DIRECT.open(url, timeout=60) as answer:
        data = answer.read()
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha256:
        raise DemoError(f"{target.name}: sha256 {digest} does not match the status ({sha256})")
    if size is not None and len(data) != size:
        raise DemoError(f"{target.name}: {len(data)} bytes, the status says {size}")
    target.write_bytes(data)


def run_demo(out_dir: Path, *, serve: bool, timeout_s: float, out: TextIO = sys.stdout) -> int:
    out_dir = out_dir.resolve()
    with Supervisor(out_dir / "logs") as sup:
        sup.handle_signals()
        print(f"starting the stack (logs in {out_dir / 'logs'}) ...", file=out, flush=True)
        stack = start_stack(sup, out_dir)
        print(f"  S3 (moto)        {stack.s3_url}  bucket {stack.bucket}", file=out)
        print(f"  worker (RunPod)  {stack.worker_url}", file=out)
        print(f"  callback server  {stack.server_url}  ({stack.database_path})", file=out)
        key = f"demo-{uuid.uuid4().hex[:12]}"
        print(f"  API key          {stack.api_key}  (API_KEYS=demo:<key>)", file=out)
        summary = submit(stack.server_url, SAMPLE, key, api_key=stack.api_key)
        job_id = summary["id"]
        print(f"submitted {SAMPLE.name} as job {job_id} (idempotency key {key})", file=out, flush=True)
        job = follow(stack.server_url, job_id, ProgressPrinter(out), timeout_s, api_key=stack.api_key)
        print(f"final status: {job['status']}", file=out)
        if job["status"] != "COMPLETED":
            raise DemoError(f"job {job_id} ended {job['status']}: {json.dumps(job.get('error'))}")
        output = job.get("output") or {}
        meshes = output.get("meshes") or {}
        for fmt, info in sorted(meshes.items()):
            print(f"  {fmt:<4} {info.get('bytes', '?'):>9} bytes  {info.get('url')}", file=out)
        for fmt in DOWNLOADS:
            info = meshes.get(fmt)
            if not info:
                raise DemoError(f"the result has no {fmt} mesh (formats: {sorted(meshes)})")
            target = out_dir / f"model.{fmt}"
            download(info["url"], target, info["sha256"], info.get("bytes"))
            print(f"downloaded {target} (sha256 verified)", file=out)
        # The key goes in the fragment: the page keeps it in localStorage, the server never sees it.
        print(f"status page: {stack.server_url}/#key={stack.api_key}", file=out, flush=True)
        if serve:
            print("serving until Ctrl-C ...", file=out, flush=True)
            try:
                while all(child.alive() for child in sup.children):
                    time.sleep(0.5)
                dead = [c for c in sup.children if not c.alive()]
                raise DemoError(f"{dead[0].name} stopped unexpectedly; log {dead[0].log_path}")
            except KeyboardInterrupt:
                print("\nstopping ...", file=out, flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stack", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("demo-output"), help="where logs, DB and meshes go")
    parser.add_argument("--serve", action="store_true", help="keep the stack up after the job, until Ctrl-C")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for the job")
    args = parser.parse_args(argv)
    for name in ("NO_PROXY", "no_proxy"):  # boto3 (creating the bucket) honours these
        os.environ[name] = ",".join(p for p in (os.environ.get(name), LOOPBACK) if p)
    try:
        return run_demo(args.out, serve=args.serve, timeout_s=args.timeout)
    except (DemoError, ProcessError) as exc:
        print(f"\ndemo failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted: everything started was stopped", file=sys.stderr)
        return 130
    except OSError as exc:
        print(f"\ndemo failed: {exc}", file=sys.stderr)
        return 1
