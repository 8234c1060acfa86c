"""The whole loop on one machine, as `python -m stack` runs it, asserted.

moto's S3 server, the worker under RunPod's local API and the callback server on SQLite run as
real processes. The sample picture goes in through POST /v1/jobs; the test checks that the job
completes through the callback server, that the meshes named in the status lie in S3 with the
given sizes and checksums, that RunPod's local webhook (no id at its root) was matched to the job,
that a second status read causes no upstream call, that the same idempotency key gives the same
job, and that every process is gone at the end.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import sqlite3
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from stack.demo import SAMPLE, ProgressPrinter, follow, http_json, submit
from stack.processes import Supervisor
from stack.services import s3_client, start_stack
from tests.stack_support import CHROMIUM, run_chromium, wait_gone

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]

JOB_TIMEOUT_S = 300.0
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


class Lines:
    """A non-TTY sink for the progress printer, so the test sees every line it printed."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def isatty(self) -> bool:
        return False

    def write(self, text: str) -> int:
        self.lines.extend(line for line in text.splitlines() if line)
        return len(text)

    def flush(self) -> None:
        pass


def upstream_calls(server_url: str) -> float:
    with urllib.request.urlopen(f"{server_url}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("orfeas_upstream_calls_total")
    )


def runpod_callbacks(database: Path, job_id: str, timeout_s: float = 15.0) -> list[sqlite3.Row]:
    """The callbacks RunPod's local server posted for the job, once one has been processed."""
    deadline = time.monotonic() + timeout_s
    while True:
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5) as db:
            db.row_factory = sqlite3.Row
            query = "SELECT id, body, accepted, job_id, outcome FROM callbacks WHERE provider = 'runpod'"
            rows = db.execute(query).fetchall()
        if any(row["outcome"] is not None for row in rows) or time.monotonic() > deadline:
            return rows
        time.sleep(0.1)


def test_one_job_through_the_whole_stack(tmp_path: Path) -> None:
    pids: list[int] = []
    with Supervisor(tmp_path / "logs") as sup:
        stack = start_stack(sup, tmp_path)
        pids = [child.pid for child in sup.children]
        assert len(pids) == 3

        key = "e2e-" + hashlib.sha256(str(tmp_path).encode()).hexdigest()[:12]
        # The job API is closed without the stack's key.
        status, refused = http_json("GET", f"{stack.server_url}/v1/jobs")
        assert (status, refused["error"]["code"]) == (401, "api_key_required")
        first = submit(stack.server_url, SAMPLE, key, api_key=stack.api_key)
        job_id = first["id"]
        again = submit(
            stack.server_url, SAMPLE, key, api_key=stack.api_key
        )  # while the first is queued or running
        assert again["id"] == job_id

        sink = Lines()
        job = follow(stack.server_url, job_id, ProgressPrinter(sink), JOB_TIMEOUT_S, api_key=stack.api_key)  # type: ignore[arg-type]
        assert job["status"] == "COMPLETED", job.get("error")
        assert sink.lines[-1].startswith("[" + "#" * 30 + "] 100.0% COMPLETED")

        # The meshes named in the status are in S3, with the sizes and checksums given.
        output: dict[str, Any] = job["output"]
        assert output["job_id"] == job_id
        meshes = output["meshes"]
        assert {"glb", "stl"} <= set(meshes)
        client: Any = s3_client(stack.s3_url)
        for fmt, info in meshes.items():
            head = client.head_object(Bucket=stack.bucket, Key=info["key"])
            assert head["ContentLength"] == info["bytes"], fmt
            data = client.get_object(Bucket=stack.bucket, Key=info["key"])["Body"].read()
            assert hashlib.sha256(data).hexdigest() == info["sha256"], fmt
            with urllib.request.urlopen(info["url"], timeout=30) as answer:  # the presigned URL works
                assert hashlib.sha256(answer.read()).hexdigest() == info["sha256"], fmt
        assert client.get_object(Bucket=stack.bucket, Key=meshes["glb"]["key"])["Body"].read(4) == b"glTF"

        # RunPod's local server posts {"output": ...} (no id at the root): it was matched to the job.
        rows = runpod_callbacks(stack.database_path, job_id)
        assert rows, "RunPod's local server posted no webhook"
        matched = [r for r in rows if r["job_id"] == job_id]
        assert matched, [(r["job_id"], r["outcome"]) for r in rows]
        assert all(r["accepted"] == 1 for r in matched)
        assert {r["outcome"] for r in matched} <= {"applied", "duplicate", "stale"}
        assert b'"id"' not in matched[0]["body"].split(b'"output"', 1)[0]  # no id before the output

        # A second read is served from storage: no upstream call.
        calls = upstream_calls(stack.server_url)
        for _ in range(2):
            status, answer = http_json("GET", f"{stack.server_url}/v1/jobs/{job_id}", api_key=stack.api_key)
            assert status == 200
            assert answer["status"] == "COMPLETED"
            assert answer["output"] == output
        assert upstream_calls(stack.server_url) == calls

        # One job for the key: the list holds it once.
        status, listed = http_json("GET", f"{stack.server_url}/v1/jobs?limit=50", api_key=stack.api_key)
        assert status == 200
        assert [j["id"] for j in listed["jobs"]] == [job_id]

        # The status page is served by the running server, with a policy that lets it load the GLB.
        try:
            page = urllib.request.urlopen(f"{stack.server_url}/", timeout=10)
        except urllib.error.HTTPError as exc:
            pytest.fail(f"GET / answered {exc.code}: create_app must call add_page_routes(app)")
        with page:
            csp = page.headers["Content-Security-Policy"]
            assert "/static/vendor/model-viewer.min.js" in page.read().decode()
        assert re.search(r"connect-src [^;]*" + re.escape(stack.s3_url), csp)
        if CHROMIUM.exists():
            rc, dom, err = run_chromium(
                ["--dump-dom", f"{stack.server_url}/?wait=0#key={stack.api_key}"], tmp_path / "profile-dom"
            )
            assert rc == 0, err[-2000:]
            assert f'data-job-id="{job_id}" data-status="COMPLETED"' in dom
            assert "<model-viewer" in dom
            shot = tmp_path / "stack-status-page.png"
            rc, _, err = run_chromium(
                [f"--screenshot={shot}", f"{stack.server_url}/?wait=0#key={stack.api_key}"],
                tmp_path / "profile-shot",
            )
            assert rc == 0, err[-2000:]
            ARTIFACTS.mkdir(exist_ok=True)
            shutil.copy(shot, ARTIFACTS / "stack-status-page.png")

    for pid in pids:
        assert wait_gone(pid), f"process {pid} still running"
