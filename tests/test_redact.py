"""Secrets never reach a log line: tokens, presigned query strings, Authorization headers and
whsec_ secrets are rewritten by the filter on the root handlers, whichever library logged them."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from orfeas_contract.redact import REDACTED, RedactingFilter, install_redaction, redact
from tests.moto_server import ACCESS_KEY, REGION, SECRET_KEY, s3_client

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("b'GET /callbacks?token=tok-123 HTTP/1.1 junk'", "tok-123"),
        ("b'GET /x?a=1&token=tok-456\\x00 HTTP/1.1'", "tok-456"),
        ("https://s3/b/k?X-Amz-Credential=AKIDX%2F2026&X-Amz-Signature=abc123def", "abc123def"),
        ("https://s3/b/k?X-Amz-Credential=AKIDX%2F2026&X-Amz-Signature=abc123def", "AKIDX"),
        ("https://s3/b/k?X-Amz-Security-Token=FwoGZX&x=1", "FwoGZX"),
        ("https://r2/b/k?Signature=sig789&Expires=1", "sig789"),
        ("{'Authorization': b'AWS4-HMAC-SHA256 Credential=AKIDY/x, Signature=ffee'}", "AKIDY"),
        ("Authorization: Bearer key-abc.def", "key-abc.def"),
        ("{'X-Callback-Token': 'tok-hdr'}", "tok-hdr"),
        ("secret=whsec_c2VjcmV0LWtleQ==", "c2VjcmV0LWtleQ"),
        ("Signature:\n" + "ab" * 32, "ab" * 32),
        ("webhook https://cb/callbacks/runpod?ref=r1&token%3Dtok-enc", "tok-enc"),
    ],
)
def test_secret_values_are_replaced(text: str, secret: str) -> None:
    """Each form of secret is replaced by [redacted]; the text around it stays."""
    cleaned = redact(text)
    assert secret not in cleaned
    assert REDACTED in cleaned


def test_ordinary_text_is_left_alone() -> None:
    """Keys, ids and prose without secrets pass unchanged."""
    for text in ("Key=jobs/a/model.glb", "job rp-1 → COMPLETED (applied)", "token bucket of 5", "ref=abc"):
        assert redact(text) == text


def test_the_filter_rewrites_arguments_tracebacks_and_extras() -> None:
    """A record's formatted message, its traceback and string extras are all redacted."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(message)s %(url)s"))
    logger = logging.getLogger(f"test-redact-{uuid.uuid4().hex}")
    logger.propagate = False
    logger.addHandler(handler)
    install_redaction(logger)
    install_redaction(logger)  # once is enough: a second call adds nothing
    assert sum(isinstance(f, RedactingFilter) for f in handler.filters) == 1
    try:
        raise ValueError("bad line b'GET /?token=in-traceback HTTP/1.1'")
    except ValueError:
        logger.exception(
            "fetching %s", "https://x/y?X-Amz-Signature=in-args", extra={"url": "u?token=in-extra"}
        )
    text = out.getvalue()
    for secret in ("in-traceback", "in-args", "in-extra"):
        assert secret not in text
    assert "fetching https://x/y?X-Amz-Signature=[redacted] u?token=[redacted]" in text
    assert "ValueError: bad line b'GET /?token=[redacted] HTTP/1.1'" in text


def test_the_workers_debug_output_of_presigned_urls_is_redacted(s3_endpoint: str, tmp_path: Path) -> None:
    """The worker's logging at DEBUG (handler.py's configure_logging) around a real upload to
    moto's S3 server, its presigned URL and a fetch of it through urllib3: boto3's and urllib3's
    lines keep no signature, credential or secret key."""
    bucket = f"redact-{uuid.uuid4().hex[:10]}"
    s3_client(s3_endpoint).create_bucket(Bucket=bucket)  # type: ignore[attr-defined]
    script = """
import hashlib, logging, urllib3
from orfeas_contract.redact import configure_logging
from orfeas.settings import Settings
from orfeas.storage.s3 import S3Store
from orfeas.types import Artifact
configure_logging("DEBUG")
settings = Settings.from_env()
store = S3Store.from_settings(settings)
data = b"solid x\\nendsolid x\\n"
stored = store.put("job-redact", Artifact("stl", data, "model/stl", hashlib.sha256(data).hexdigest()))
print(stored.url, flush=True)
answer = urllib3.PoolManager().request("GET", stored.url)
assert answer.status == 200, answer.status
logging.getLogger("orfeas.worker").info("stored %s", stored.url)
"""
    env = {
        **os.environ,
        "BUCKET_ENDPOINT_URL": s3_endpoint,
        "BUCKET_ACCESS_KEY_ID": ACCESS_KEY,
        "BUCKET_SECRET_ACCESS_KEY": SECRET_KEY,
        "ORFEAS_S3_BUCKET": bucket,
        "ORFEAS_S3_REGION": REGION,
        "NO_PROXY": "127.0.0.1,localhost",
    }
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr[-3000:]
    url = done.stdout.strip().splitlines()[-1]
    query = parse_qs(urlsplit(url).query)
    signature = query["X-Amz-Signature"][0]
    log = done.stderr
    assert "X-Amz-Signature=[redacted]" in log  # the URL was logged, by urllib3 and by us
    assert "Signature:" in log  # botocore's signing steps were logged at DEBUG
    for secret in (signature, ACCESS_KEY, SECRET_KEY):
        assert secret not in log, secret
