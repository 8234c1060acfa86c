"""The status page: served by the real callback-server app, rendered in headless Chromium.

Jobs are put in a real SQLite store; the completed one's GLB lies in moto's S3 server (a
presigned URL, as the worker gives). Chromium loads the page, its script lists the jobs through
GET /v1/jobs and the screenshot is kept with the test's artifacts (and test-artifacts/).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import shutil
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web

from callback_server.app import create_app, start_background
from callback_server.routes_page import (
    STATIC_DIR,
    add_page_routes,
    content_security_policy,
)
from callback_server.runtime import RUNTIME
from callback_server.settings import ApiKey, ServerSettings
from callback_server.store import open_store
from callback_server.store.base import Job, StatusEvent
from orfeas.errors import ConfigError
from orfeas_contract.status import JobStatus
from stack.processes import free_port
from tests.cb_fakes import API_KEY, API_KEY_LABEL
from tests.moto_server import s3_client
from tests.stack_support import CHROMIUM, CHROMIUM_FLAGS

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
BUCKET = "status-page"


@dataclass
class Page:
    url: str
    app: web.Application
    glb_url: str
    s3_endpoint: str


def _glb_bytes() -> bytes:
    """The sample emblem's GLB as the pipeline writes it: a flat, coloured logo."""
    import base64

    from orfeas.pipeline import Pipeline
    from orfeas.request import parse_request
    from orfeas.settings import Settings
    from tests.inputs_support import EMBLEM

    request = parse_request(
        {"image": base64.b64encode(EMBLEM.read_bytes()).decode(), "formats": ["glb"], "quality": 2}
    )
    return Pipeline(Settings()).run(request, job_id="page-done").artifacts["glb"].data


async def _put_jobs(app: web.Application, glb_url: str, glb: bytes) -> None:
    store = app[RUNTIME].store
    now = app[RUNTIME].clock()
    meshes = {
        "glb": {
            "key": "jobs/page-done/model.glb",
            "url": glb_url,
            "bytes": len(glb),
            "sha256": hashlib.sha256(glb).hexdigest(),
            "content_type": "model/gltf-binary",
        },
        "stl": {
            "key": "jobs/page-done/model.stl",
            "url": glb_url.replace("model.glb", "model.stl"),
            "bytes": 684,
            "sha256": "0" * 64,
            "content_type": "model/stl",
        },
    }
    for job_id in ("page-done", "page-running", "page-failed"):
        await store.create_job(
            Job(id=job_id, status=JobStatus.IN_QUEUE, created_at=now, updated_at=now, input={"image": "x"})
        )
    await store.apply_event(
        StatusEvent(
            "page-running",
            JobStatus.IN_PROGRESS,
            dedupe_key="p1",
            progress={"stage": "shape", "fraction": 0.42, "eta_seconds": 3.0},
        )
    )
    await store.apply_event(
        StatusEvent(
            "page-done",
            JobStatus.COMPLETED,
            dedupe_key="c1",
            output={"job_id": "page-done", "backend": "extrude", "meshes": meshes},
        )
    )
    await store.apply_event(
        StatusEvent(
            "page-failed",
            JobStatus.FAILED,
            dedupe_key="f1",
            error={"code": "invalid_input", "message": "image: not a picture"},
        )
    )


@pytest_asyncio.fixture
async def page(tmp_path: Path, s3_endpoint: str) -> AsyncIterator[Page]:
    client: Any = s3_client(s3_endpoint)
    glb = _glb_bytes()
    client.create_bucket(Bucket=BUCKET)
    client.put_object(
        Bucket=BUCKET, Key="jobs/page-done/model.glb", Body=glb, ContentType="model/gltf-binary"
    )
    glb_url = client.generate_presigned_url(
        "get_object", Params={"Bucket": BUCKET, "Key": "jobs/page-done/model.glb"}, ExpiresIn=600
    )
    settings = replace(
        ServerSettings.from_env({"ORFEAS_PAGE_MODEL_ORIGINS": s3_endpoint}),
        host="127.0.0.1",
        port=0,
        lease_s=3.0,
        api_keys=(ApiKey(API_KEY_LABEL, API_KEY),),
    )
    store = open_store(f"sqlite:///{tmp_path / 'page.db'}")
    app = create_app(settings, store)
    if not any(resource.canonical == "/" for resource in app.router.resources()):
        add_page_routes(app, settings.model_origins)  # an app without the page wired in
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    start_background(app)
    await asyncio.wait_for(app[RUNTIME].store_ready.wait(), 10)
    await _put_jobs(app, glb_url, glb)
    try:
        yield Page(f"http://127.0.0.1:{port}", app, glb_url, s3_endpoint)
    finally:
        await runner.cleanup()


@pytest.mark.asyncio
async def test_index_and_static_files_have_types_and_policy(page: Page) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(page.url + "/") as answer:
            assert answer.status == 200
            assert answer.headers["Content-Type"].startswith("text/html")
            csp = answer.headers["Content-Security-Policy"]
            assert "script-src 'self'" in csp
            assert "default-src 'none'" in csp
            assert page.s3_endpoint in csp.split("connect-src", 1)[1].split(";", 1)[0]
            html = await answer.text()
            assert "/static/vendor/model-viewer.min.js" in html
            assert "/static/app.js" in html
            assert "http://" not in html.replace("http://www.w3.org", "")
            assert "https://" not in html
        for path, kind in (
            ("/static/app.js", "text/javascript"),
            ("/static/style.css", "text/css"),
            ("/static/vendor/model-viewer.min.js", "text/javascript"),
        ):
            async with session.get(page.url + path) as answer:
                assert answer.status == 200, path
                assert answer.headers["Content-Type"].startswith(kind), path
                assert answer.headers["X-Content-Type-Options"] == "nosniff"
                body = await answer.read()
                assert body == (STATIC_DIR / path.removeprefix("/static/")).read_bytes()
        for path in ("/static/../app.py", "/static/%2e%2e/app.py", "/static/nothing.js", "/static/vendor"):
            async with session.get(page.url + path) as answer:
                assert answer.status == 404, path


@pytest.mark.asyncio
async def test_the_shell_loads_without_a_key_and_the_jobs_need_one(page: Page) -> None:
    """GET / answers without a key; the jobs it would list answer 401 without one, 200 with it."""
    async with aiohttp.ClientSession() as session:
        async with session.get(page.url + "/") as answer:
            assert answer.status == 200
        async with session.get(page.url + "/v1/jobs") as answer:
            assert answer.status == 401
            assert (await answer.json())["error"]["code"] == "api_key_required"
        async with session.get(
            page.url + "/v1/jobs", headers={"Authorization": f"Bearer {API_KEY}"}
        ) as answer:
            assert answer.status == 200
            assert {j["id"] for j in (await answer.json())["jobs"]} == {
                "page-done",
                "page-running",
                "page-failed",
            }


@pytest.mark.asyncio
async def test_s3_server_allows_the_page_to_fetch_the_model(page: Page) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.get(page.glb_url, headers={"Origin": page.url}) as answer,
    ):
        assert answer.status == 200
        assert answer.headers.get("Access-Control-Allow-Origin") in ("*", page.url)
        assert (await answer.read())[:4] == b"glTF"


def test_model_origins_come_from_the_environment() -> None:
    """The page's mesh origins are read by the settings: listed, else the bucket's, else https."""

    def origins(env: dict[str, str]) -> tuple[str, ...]:
        return ServerSettings.from_env(env).model_origins

    assert origins({"ORFEAS_PAGE_MODEL_ORIGINS": "http://127.0.0.1:9000/x, https://r2.example"}) == (
        "http://127.0.0.1:9000",
        "https://r2.example",
    )
    assert origins({"BUCKET_ENDPOINT_URL": "http://minio:9000"}) == ("http://minio:9000",)
    assert origins({}) == ("https:",)
    with pytest.raises(ConfigError) as caught:
        origins({"ORFEAS_PAGE_MODEL_ORIGINS": "ftp://x"})
    assert caught.value.field == "ORFEAS_PAGE_MODEL_ORIGINS"
    policy = content_security_policy(("http://s3.local:9000",))
    assert "connect-src 'self' http://s3.local:9000 blob: data:" in policy


async def _chromium(args: list[str], timeout_s: float = 60.0) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        str(CHROMIUM),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout_s)
    finally:
        if process.returncode is None:
            os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
        else:
            # Chromium's helpers (zygote, GPU process) share its group; none may outlive the test.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
    return process.returncode or 0, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")


@pytest.mark.asyncio
@pytest.mark.skipif(
    not CHROMIUM.exists(), reason="headless Chromium (/usr/bin/chromium, Debian's chromium) absent"
)
async def test_page_renders_jobs_and_preview_in_chromium(page: Page, tmp_path: Path) -> None:
    shot = tmp_path / "status-page.png"
    common = list(CHROMIUM_FLAGS)
    # Without a key the shell loads and shows no job, only the form that asks for one.
    rc, dom, err = await _chromium(
        [*common, f"--user-data-dir={tmp_path / 'profile-nokey'}", "--dump-dom", page.url + "/?wait=0"]
    )
    assert rc == 0, err[-2000:]
    assert "data-job-id" not in dom
    assert '<form id="key-form">' in dom  # no longer hidden
    # With the key (given as a fragment, kept in localStorage, sent as the Bearer header).
    rc, dom, err = await _chromium(
        [
            *common,
            f"--user-data-dir={tmp_path / 'profile-dom'}",
            "--dump-dom",
            page.url + f"/?wait=0#key={API_KEY}",
        ]
    )
    assert rc == 0, err[-2000:]
    assert API_KEY not in dom  # the fragment is taken out of the address bar
    for job_id, status in (
        ("page-done", "COMPLETED"),
        ("page-running", "IN_PROGRESS"),
        ("page-failed", "FAILED"),
    ):
        assert f'data-job-id="{job_id}"' in dom, dom[-3000:]
        assert f'data-job-id="{job_id}" data-status="{status}"' in dom
    assert "42% shape" in dom  # the running job's progress
    assert f'src="{page.glb_url.replace("&", "&amp;")}"' in dom  # the completed job's preview
    # The flat emblem, picture up (+Y), is framed from 30° off straight above, not edge-on.
    assert 'camera-orbit="0deg 30deg auto"' in dom
    assert dom.count('class="download"') == 2  # GLB and STL links

    rc, _, err = await _chromium(
        [
            *common,
            f"--user-data-dir={tmp_path / 'profile-shot'}",
            f"--screenshot={shot}",
            page.url + f"/?wait=0#key={API_KEY}",
        ]
    )
    assert rc == 0, err[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 10_000
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copy(shot, ARTIFACTS / "status-page.png")
