"""The stack's three services, each a child of one Supervisor, on free loopback ports.

1. moto's S3 server, with the bucket created;
2. the worker under RunPod's local API (`handler.py --rp_serve_api`), storing meshes in that S3;
3. the callback server on SQLite, submitting to that worker and receiving its webhooks.
"""

from __future__ import annotations

import base64
import os
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stack.processes import Supervisor, free_port

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
BUCKET = "orfeas-demo"
REGION = "us-east-1"
ACCESS_KEY = "orfeas-local"
SECRET_KEY = "orfeas-local-secret"
READY_TIMEOUT_S = 90.0


@dataclass(frozen=True)
class Stack:
    s3_url: str
    bucket: str
    worker_url: str
    server_url: str
    database_path: Path
    callback_token: str
    webhook_secret: str
    api_key: str  # the job API's key (API_KEYS=demo:<key>), sent as Authorization: Bearer


def _base_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    # Loopback only: a proxy from the user's shell must not capture local calls.
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    return env


def s3_client(
    endpoint: str, *, access_key: str = ACCESS_KEY, secret_key: str = SECRET_KEY, max_attempts: int | None = 2
) -> object:
    """A path-style S3 client for a local endpoint; `max_attempts=None` keeps botocore's retries."""
    import boto3
    from botocore.config import Config

    retries: dict[str, Any] = {} if max_attempts is None else {"retries": {"max_attempts": max_attempts}}
    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        region_name=REGION,
        config=Config(s3={"addressing_style": "path"}, **retries),
    )


def start_s3(sup: Supervisor) -> str:
    port = free_port(HOST)
    child = sup.start(
        "s3", [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(port)], env=_base_env()
    )
    url = f"http://{HOST}:{port}"
    sup.wait_http(child, f"{url}/moto-api/", timeout_s=READY_TIMEOUT_S, ok=lambda s: s < 500)
    s3_client(url).create_bucket(Bucket=BUCKET)  # type: ignore[attr-defined]
    return url


def start_worker(sup: Supervisor, s3_url: str) -> str:
    """The worker holds no callback secret: each job's input brings its own, derived by the server."""
    port = free_port(HOST)
    env = _base_env()
    env.update(
        {
            "BUCKET_ENDPOINT_URL": s3_url,
            "BUCKET_ACCESS_KEY_ID": ACCESS_KEY,
            "BUCKET_SECRET_ACCESS_KEY": SECRET_KEY,
            "ORFEAS_S3_BUCKET": BUCKET,
            "ORFEAS_S3_REGION": REGION,
            "ORFEAS_ALLOW_PRIVATE_WEBHOOKS": "1",
        }
    )
    env.pop("ORFEAS_WEBHOOK_SECRET", None)
    argv = [
        sys.executable,
        str(ROOT / "handler.py"),
        "--rp_serve_api",
        "--rp_api_port",
        str(port),
        "--rp_api_host",
        HOST,
    ]
    child = sup.start("worker", argv, env=env, cwd=ROOT)
    url = f"http://{HOST}:{port}"
    # RunPod's local API is up once it answers anything (its root is a 404).
    sup.wait_http(child, f"{url}/docs", timeout_s=READY_TIMEOUT_S, ok=lambda s: s < 500)
    return url


def start_server(
    sup: Supervisor,
    worker_url: str,
    s3_url: str,
    database: Path,
    callback_token: str,
    webhook_secret: str,
    api_key: str,
) -> str:
    port = free_port(HOST)
    url = f"http://{HOST}:{port}"
    env = _base_env()
    env.update(
        {
            "HOST": HOST,
            "PORT": str(port),
            "DATABASE_URL": f"sqlite:///{database}",
            "PUBLIC_URL": url,
            "RUNPOD_ENDPOINT_URL": worker_url,
            "RUNPOD_LOCAL": "1",
            "CALLBACK_TOKEN": callback_token,
            "ORFEAS_WEBHOOK_SECRET": webhook_secret,
            "API_KEYS": f"demo:{api_key}",
            "ORFEAS_ALLOW_PRIVATE_WEBHOOKS": "1",
            "LEADER_LEASE_SECONDS": "3",
            # The status page's preview fetches the GLB from the S3 server (its CSP allows it).
            "ORFEAS_PAGE_MODEL_ORIGINS": s3_url,
        }
    )
    child = sup.start("callback-server", [sys.executable, "-m", "callback_server"], env=env, cwd=ROOT)
    sup.wait_http(child, f"{url}/readyz", timeout_s=READY_TIMEOUT_S)
    return url


def start_stack(sup: Supervisor, workdir: Path) -> Stack:
    """Start S3, the worker and the callback server under `sup`; logs and the database in `workdir`."""
    workdir.mkdir(parents=True, exist_ok=True)
    database = workdir / "callback_server.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{database}{suffix}").unlink(missing_ok=True)  # a fresh store for every run
    token = secrets.token_urlsafe(16)
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    api_key = secrets.token_urlsafe(24)
    s3_url = start_s3(sup)
    worker_url = start_worker(sup, s3_url)
    server_url = start_server(sup, worker_url, s3_url, database, token, secret, api_key)
    return Stack(s3_url, BUCKET, worker_url, server_url, database, token, secret, api_key)
