"""handler.py end to end: called directly, under `--test_input`, and under RunPod's own local API server.

These run the real pipeline (weights-free backends) on the bundled sample, store meshes in moto's
S3 server and send webhooks to a loopback receiver.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import json
import os
import select
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from urllib.parse import parse_qs, urlsplit

import pytest
from standardwebhooks.webhooks import Webhook

from stack.processes import free_port
from tests.moto_server import ACCESS_KEY, REGION, SECRET_KEY, s3_client

ROOT = Path(__file__).resolve().parent.parent
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
TEST_INPUT = json.loads((ROOT / "test_input.json").read_text())


@pytest.fixture
def bucket(s3_endpoint: str) -> str:
    name = f"orfeas-{uuid.uuid4().hex[:12]}"
    s3_client(s3_endpoint).create_bucket(Bucket=name)
    return name


def _env(s3_endpoint: str, bucket: str, **extra: str) -> dict[str, str]:
    return {
        "BUCKET_ENDPOINT_URL": s3_endpoint,
        "BUCKET_ACCESS_KEY_ID": ACCESS_KEY,
        "BUCKET_SECRET_ACCESS_KEY": SECRET_KEY,
        "ORFEAS_S3_BUCKET": bucket,
        "ORFEAS_S3_REGION": REGION,
        "ORFEAS_ALLOW_PRIVATE_WEBHOOKS": "1",
        "ORFEAS_WEBHOOK_SECRET": SECRET,
        "ORFEAS_INPUT_BUCKETS": f"{bucket}/inputs",
        **extra,
    }


@pytest.fixture
def handler_module(s3_endpoint, bucket, monkeypatch) -> Iterator[ModuleType]:
    """handler.py imported afresh under this test's environment (it reads settings at import)."""
    for key, value in _env(s3_endpoint, bucket).items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("RUNPOD_WEBHOOK_POST_OUTPUT", raising=False)
    sys.modules.pop("handler", None)
    module = importlib.import_module("handler")
    yield module
    sys.modules.pop("handler", None)


def _keys(endpoint: str, bucket: str) -> list[str]:
    listing = s3_client(endpoint).list_objects_v2(Bucket=bucket)
    return sorted(obj["Key"] for obj in listing.get("Contents", []))


def _check_meshes(output: dict, job_id: str, formats: list[str]) -> None:
    assert output["job_id"] == job_id
    assert sorted(output["meshes"]) == sorted(formats)
    for fmt, mesh in output["meshes"].items():
        assert mesh["key"] == f"orfeas/{job_id}/model.{fmt}"
        with urllib.request.urlopen(mesh["url"], timeout=10) as response:
            body = response.read()
        assert hashlib.sha256(body).hexdigest() == mesh["sha256"]
        assert len(body) == mesh["bytes"] > 0
    assert output["mesh"]["watertight"] is True


def test_the_handler_completes_the_test_input(handler_module, s3_endpoint, bucket, webhook_receiver):
    """The sample job through `handler.handler` stores both meshes; progress and completed are signed."""
    job = {"id": "job-direct", "input": {**TEST_INPUT["input"], "webhook": webhook_receiver.url}}
    output = asyncio.run(handler_module.handler(job))
    assert "error" not in output, output
    _check_meshes(output, "job-direct", TEST_INPUT["input"]["formats"])
    assert _keys(s3_endpoint, bucket) == ["orfeas/job-direct/model.glb", "orfeas/job-direct/model.stl"]
    events = [Webhook(SECRET).verify(r.body, r.headers) for r in webhook_receiver.requests]
    assert events[-1]["type"] == "completed"
    assert events[-1]["output"] == output
    assert any(e["type"] == "progress" for e in events)


def test_the_handler_refuses_bad_input_and_stays_usable(handler_module):
    """A bad job returns the coded error string; the next good job in the same process completes."""
    bad = asyncio.run(handler_module.handler({"id": "job-bad", "input": {"image": "x", "quality": 0}}))
    assert bad == {"error": bad["error"]}
    assert bad["error"].startswith("invalid_input: quality:")
    good = asyncio.run(handler_module.handler({"id": "job-good", **TEST_INPUT}))
    assert "meshes" in good


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, 1),
        ({"ORFEAS_CONCURRENCY": "3"}, 3),
        ({"ORFEAS_CONCURRENCY": "3", "ORFEAS_AUTO_SHAPE_BACKEND": "hunyuan"}, 1),
    ],
)
def test_concurrency_follows_the_settings(s3_endpoint, bucket, monkeypatch, env, expected):
    """The weights-free worker takes ORFEAS_CONCURRENCY jobs (default 1); a GPU backend takes one."""
    for key in ("ORFEAS_CONCURRENCY", "ORFEAS_AUTO_SHAPE_BACKEND", "ORFEAS_EAGER_LOAD"):
        monkeypatch.delenv(key, raising=False)
    for key, value in {**_env(s3_endpoint, bucket), **env}.items():
        monkeypatch.setenv(key, value)
    sys.modules.pop("handler", None)
    try:
        module = importlib.import_module("handler")
        assert module.concurrency_modifier(5) == expected
    finally:
        sys.modules.pop("handler", None)


def test_s3_pictures_are_read_through_the_store(handler_module, s3_endpoint, bucket):
    """An s3:// picture is fetched with the worker's bucket credentials and becomes a mesh."""
    picture = (ROOT / "orfeas" / "samples" / "emblem.png").read_bytes()
    s3_client(s3_endpoint).put_object(Bucket=bucket, Key="inputs/emblem.png", Body=picture)
    job = {"id": "job-s3-in", "input": {"image": f"s3://{bucket}/inputs/emblem.png", "formats": ["stl"]}}
    output = asyncio.run(handler_module.handler(job))
    assert "error" not in output, output
    assert output["meshes"]["stl"]["key"] == "orfeas/job-s3-in/model.stl"


def test_s3_pictures_outside_the_input_buckets_are_refused_without_an_s3_call(
    handler_module, s3_endpoint, bucket
):
    """A bucket the worker's credentials reach but ORFEAS_INPUT_BUCKETS does not list is refused
    before any S3 call, with the same error for an object that exists and one that does not."""
    picture = (ROOT / "orfeas" / "samples" / "emblem.png").read_bytes()
    client = s3_client(s3_endpoint)
    client.put_object(Bucket=bucket, Key="private/emblem.png", Body=picture)  # outside bucket/inputs
    other = f"other-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=other)
    client.put_object(Bucket=other, Key="inputs/emblem.png", Body=picture)
    pipeline = handler_module.WORKER.pipeline
    calls: list[tuple[str, str]] = []
    real_reader = pipeline.object_reader

    def counting(b: str, k: str) -> bytes:
        calls.append((b, k))
        return real_reader(b, k)

    pipeline.object_reader = counting
    errors = {}
    for n, source in enumerate(
        (
            f"s3://{bucket}/private/emblem.png",
            f"s3://{bucket}/private/missing.png",
            f"s3://{other}/inputs/emblem.png",
            f"s3://{other}/inputs/missing.png",
        )
    ):
        job = {"id": f"job-s3-refused-{n}", "input": {"image": source, "formats": ["stl"]}}
        errors[source] = asyncio.run(handler_module.handler(job))["error"]
    assert calls == []
    by_bucket = {b: {e for s, e in errors.items() if s.startswith(f"s3://{b}/")} for b in (bucket, other)}
    refusal = "pictures are read only from the buckets in ORFEAS_INPUT_BUCKETS"
    assert by_bucket[bucket] == {f"invalid_input: image: s3://{bucket}/...: {refusal}"}
    assert len(by_bucket[other]) == 1
    assert "emblem" not in "".join(errors.values())
    assert "bytes" not in "".join(errors.values())
    # The listed prefix is read through the store: the same credentials, one call.
    client.put_object(Bucket=bucket, Key="inputs/emblem.png", Body=picture)
    job = {"id": "job-s3-allowed", "input": {"image": f"s3://{bucket}/inputs/emblem.png", "formats": ["stl"]}}
    assert "error" not in asyncio.run(handler_module.handler(job))
    assert calls == [(bucket, "inputs/emblem.png")]


def _run_handler(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "handler.py", *args],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.slow
def test_test_input_flag_runs_one_job(s3_endpoint, bucket):
    """`python handler.py --test_input "$(cat test_input.json)"` exits 0; a bad input exits 1."""
    done = _run_handler(_env(s3_endpoint, bucket), "--test_input", json.dumps(TEST_INPUT))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "orfeas/local_test/model.glb" in _keys(s3_endpoint, bucket)
    bad = _run_handler(_env(s3_endpoint, bucket), "--test_input", json.dumps({"input": {"formats": ["zip"]}}))
    assert bad.returncode == 1
    assert "invalid_input: formats.0" in bad.stdout + bad.stderr
    assert "Traceback" not in bad.stdout + bad.stderr


@pytest.fixture
def local_api(s3_endpoint, bucket, webhook_receiver) -> Iterator[str]:
    """`python handler.py --rp_serve_api` on a free loopback port; stopped after the test.

    RUNPOD_WEBHOOK_POST_OUTPUT points RunPod's progress updates at the loopback receiver, as
    RunPod points them at its job endpoint in production.
    """
    port = free_port()
    progress_url = webhook_receiver.url.replace("/hooks/orfeas", "/job-done") + "?id=$ID"
    env = {**os.environ, **_env(s3_endpoint, bucket, RUNPOD_WEBHOOK_POST_OUTPUT=progress_url)}
    env["UVICORN_LOG_LEVEL"] = "warning"
    proc = subprocess.Popen(
        [
            sys.executable,
            "handler.py",
            "--rp_serve_api",
            "--rp_api_host",
            "127.0.0.1",
            "--rp_api_port",
            str(port),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{base}/openapi.json", timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the local API server did not start") from None
                time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _post(url: str, body: dict | None = None, timeout: float = 120) -> dict:
    data = json.dumps(body or {}).encode()
    request = urllib.request.Request(
        url, data=data, headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


@pytest.mark.slow
def test_runpod_local_api_runsync_run_and_status(local_api, s3_endpoint, bucket, webhook_receiver):
    """/runsync and /run + /status answer COMPLETED with stored meshes; RunPod's endpoint hears progress."""
    sync = _post(f"{local_api}/runsync", TEST_INPUT)
    assert sync["status"] == "COMPLETED", sync
    _check_meshes(sync["output"], sync["id"], ["glb", "stl"])

    queued = _post(f"{local_api}/run", {"input": {**TEST_INPUT["input"], "formats": ["obj", "3mf"]}})
    assert queued["status"] == "IN_PROGRESS"
    status = _post(f"{local_api}/status/{queued['id']}")
    assert status["status"] == "COMPLETED", status
    _check_meshes(status["output"], queued["id"], ["obj", "3mf"])
    assert f"orfeas/{queued['id']}/model.3mf" in _keys(s3_endpoint, bucket)

    progress = [r for r in webhook_receiver.requests if r.path.startswith("/job-done")]
    assert progress, "no progress update reached RunPod's job endpoint"
    first = progress[0]
    assert parse_qs(urlsplit(first.path).query)["id"][0] in (sync["id"], queued["id"])
    update = json.loads(first.body)
    assert update["status"] == "IN_PROGRESS"
    assert set(update["output"]) == {"stage", "fraction", "eta_seconds"}


@pytest.mark.slow
def test_runpod_local_api_fails_bad_input_fast(local_api, s3_endpoint, bucket):
    """Bad inputs are FAILED with invalid_input and the field, each in under a second; nothing is stored."""
    cases = [
        ({"image": "aGVsbG8=", "dimensions": {"width_mm": -1}}, "invalid_input: dimensions.width_mm:"),
        ({"image": "aGVsbG8=", "formats": ["zip"]}, "invalid_input: formats.0:"),
        ({"prompt": "a cat", "image": "aGVsbG8="}, "invalid_input: image:"),
        ({"image": "aGVsbG8=", "webhook": "ftp://hooks.example.com/x"}, "invalid_input: webhook:"),
    ]
    for body, expected in cases:
        started = time.monotonic()
        answer = _post(f"{local_api}/runsync", {"input": body})
        elapsed = time.monotonic() - started
        assert answer["status"] == "FAILED", answer
        assert answer["error"].startswith(expected), answer
        assert "Traceback" not in answer["error"]
        assert elapsed < 1.0, (body, elapsed)  # refused at validation: no stage, upload or callback runs
    assert _keys(s3_endpoint, bucket) == []


@pytest.fixture
def listeners() -> Iterator[dict[str, socket.socket]]:
    """Listening sockets on 127.0.0.1 and ::1 (where the host has IPv6) that nothing accepts from:
    a connection made to one waits in its backlog, so `select` tells whether any was made."""
    socks: dict[str, socket.socket] = {}
    for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        try:
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.bind((host, 0))
        except OSError:
            continue
        sock.listen(8)
        socks[host] = sock
    try:
        yield socks
    finally:
        for sock in socks.values():
            sock.close()


def _connections_made(socks: dict[str, socket.socket]) -> list[str]:
    readable, _, _ = select.select(list(socks.values()), [], [], 0.1)
    return [host for host, sock in socks.items() if sock in readable]


@pytest.mark.parametrize(
    ("url", "listener"),
    [
        ("https://127.0.0.1:{port}/picture.png", "127.0.0.1"),
        ("https://[::1]:{port}/picture.png", "::1"),
        ("https://localhost:{port}/picture.png", "127.0.0.1"),  # a name that resolves to loopback
        ("https://169.254.169.254/latest/meta-data/picture.png", None),
        ("https://10.0.0.7/picture.png", None),
    ],
)
def test_private_picture_urls_are_refused_even_with_private_webhooks_allowed(
    handler_module, listeners, url, listener
):
    """https picture URLs to loopback, metadata or private ranges are invalid_input, no connection made."""
    assert handler_module.SETTINGS.allow_private_webhooks  # the setting does not open pictures up
    if listener is not None and listener not in listeners:
        pytest.skip(f"no {listener} on this host")
    port = listeners[listener].getsockname()[1] if listener else 443
    job = {"id": "job-ssrf", "input": {"image": url.format(port=port), "formats": ["stl"]}}
    output = asyncio.run(handler_module.handler(job))
    assert list(output) == ["error"], output
    assert output["error"].startswith("invalid_input: image:"), output
    assert "not public" in output["error"] or "non-public" in output["error"], output
    assert _connections_made(listeners) == []


def test_a_model_that_cannot_load_eagerly_leaves_the_worker_serving(tmp_path):
    """With ORFEAS_EAGER_LOAD and no Hunyuan3D weights, the worker logs the error at start and
    keeps going; a job then fails with that error instead of the worker exiting."""
    code = (
        "import asyncio, json, handler; handler._preload(); print('serving'); "
        "print(json.dumps(asyncio.run(handler.handler({'id': 'eager-1', 'input': {'image': "
        "json.load(open('test_input.json'))['input']['image'], 'backend': 'hunyuan'}}))))"
    )
    env = {
        "ORFEAS_EAGER_LOAD": "true",
        "ORFEAS_AUTO_SHAPE_BACKEND": "hunyuan",
        "ORFEAS_MODEL_DIR": str(tmp_path),
        "HF_HOME": str(tmp_path / "hf"),
        "HF_HUB_OFFLINE": "1",
        "ORFEAS_OUTPUT_DIR": str(tmp_path / "out"),
    }
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "eager load failed" in done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "serving"
    error = json.loads(lines[-1])["error"]
    assert error.startswith(("model_unavailable:", "backend_unavailable:")), error
    assert "Traceback" not in done.stderr
