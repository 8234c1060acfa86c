"""The S3 artifact store against moto's S3 server over HTTP, with faults injected by a loopback proxy."""

from __future__ import annotations

import base64
import hashlib
import urllib.request
import uuid

import pytest

from orfeas.errors import InvalidInput, StorageError
from orfeas.retry_policy import Backoff
from orfeas.settings import Settings
from orfeas.storage import Uploads
from orfeas.storage.s3 import S3Store
from orfeas.types import Artifact
from tests.moto_server import ACCESS_KEY, REGION, SECRET_KEY, FaultPlan, FlakyProxy, s3_client

FAST = Backoff(attempts=4, initial_s=0.01, max_s=0.05, jitter_s=0.01)
TYPES = {
    "glb": "model/gltf-binary",
    "stl": "model/stl",
    "obj": "model/obj",
    "ply": "application/ply",
    "3mf": "model/3mf",
}


def _store_all(store, job_id, artifacts):
    """Every mesh of a job stored in parallel, as the worker does."""
    with Uploads(store, job_id) as uploads:
        return uploads.results(artifacts)


def _artifact(fmt: str, size: int = 4096, seed: int = 0) -> Artifact:
    data = hashlib.shake_256(f"{fmt}-{seed}".encode()).digest(size)
    return Artifact(format=fmt, data=data, content_type=TYPES[fmt], sha256=hashlib.sha256(data).hexdigest())


@pytest.fixture
def bucket(s3_endpoint: str) -> str:
    name = f"orfeas-{uuid.uuid4().hex[:12]}"
    s3_client(s3_endpoint).create_bucket(Bucket=name)
    return name


def _settings(endpoint: str, bucket: str, **kw: object) -> Settings:
    return Settings(
        bucket_endpoint_url=endpoint,
        bucket_access_key_id=ACCESS_KEY,
        bucket_secret_access_key=SECRET_KEY,
        s3_bucket=bucket,
        s3_region=REGION,
        s3_prefix="meshes",
        **kw,
    )


def _store(endpoint: str, bucket: str, **kw: object) -> S3Store:
    store = S3Store.from_settings(_settings(endpoint, bucket))
    store.backoff = FAST
    for name, value in kw.items():
        setattr(store, name, value)
    return store


def _keys(endpoint: str, bucket: str) -> list[str]:
    listing = s3_client(endpoint).list_objects_v2(Bucket=bucket)
    return sorted(obj["Key"] for obj in listing.get("Contents", []))


def test_every_format_lands_under_its_deterministic_key_with_type_and_checksums(s3_endpoint, bucket):
    """Each mesh lands at {prefix}/{job_id}/model.{fmt} with content type, SHA-256 checksum and metadata."""
    store = _store(s3_endpoint, bucket)
    artifacts = {fmt: _artifact(fmt) for fmt in TYPES}
    stored = _store_all(store, "job-abc", artifacts)
    assert _keys(s3_endpoint, bucket) == sorted(f"meshes/job-abc/model.{fmt}" for fmt in TYPES)
    client = s3_client(s3_endpoint)
    for fmt, art in artifacts.items():
        item = stored[fmt]
        assert item.key == f"meshes/job-abc/model.{fmt}"
        assert (item.bytes, item.sha256, item.content_type) == (art.size, art.sha256, art.content_type)
        head = client.head_object(Bucket=bucket, Key=item.key, ChecksumMode="ENABLED")
        assert head["ContentType"] == art.content_type
        assert head["ContentLength"] == art.size
        assert head["Metadata"]["sha256"] == art.sha256
        assert head["ChecksumSHA256"] == base64.b64encode(hashlib.sha256(art.data).digest()).decode()


def test_presigned_urls_download_the_exact_bytes_over_http(s3_endpoint, bucket):
    """The result's URL is fetchable without credentials and returns the stored mesh byte for byte."""
    store = _store(s3_endpoint, bucket)
    art = _artifact("glb", 10_000)
    item = store.put("job-url", art, presign_seconds=120)
    assert "X-Amz-Signature=" in item.url
    assert "X-Amz-Expires=120" in item.url
    with urllib.request.urlopen(item.url, timeout=10) as response:
        body = response.read()
        assert response.headers["Content-Type"] == "model/gltf-binary"
    assert hashlib.sha256(body).hexdigest() == art.sha256


def test_a_retried_job_overwrites_its_own_objects(s3_endpoint, bucket):
    """Running the same job id twice leaves exactly one object per format, holding the second run's bytes."""
    store = _store(s3_endpoint, bucket)
    _store_all(store, "job-retry", {f: _artifact(f, seed=1) for f in ("glb", "stl")})
    second = {f: _artifact(f, seed=2) for f in ("glb", "stl")}
    _store_all(store, "job-retry", second)
    assert _keys(s3_endpoint, bucket) == ["meshes/job-retry/model.glb", "meshes/job-retry/model.stl"]
    got = s3_client(s3_endpoint).get_object(Bucket=bucket, Key="meshes/job-retry/model.stl")
    assert got["Body"].read() == second["stl"].data


def test_large_meshes_go_up_in_parts(s3_endpoint, bucket):
    """Above the multipart threshold the mesh is uploaded in parts and still arrives whole with its sha256."""
    store = _store(s3_endpoint, bucket)
    store.multipart_threshold = 1024 * 1024
    store.multipart_chunksize = 5 * 1024 * 1024
    art = _artifact("stl", 6 * 1024 * 1024 + 17)
    item = store.put("job-big", art)
    client = s3_client(s3_endpoint)
    head = client.head_object(Bucket=bucket, Key=item.key)
    assert head["ETag"].strip('"').endswith("-2")  # two parts: 5 MiB + the rest
    assert head["Metadata"]["sha256"] == art.sha256
    body = client.get_object(Bucket=bucket, Key=item.key)["Body"].read()
    assert hashlib.sha256(body).hexdigest() == art.sha256


@pytest.mark.parametrize("mode", ["503", "reset"])
def test_throttling_and_broken_connections_are_retried(s3_endpoint, bucket, mode):
    """Two SlowDown answers (or two reset connections) in front of S3 are ridden out; every mesh arrives."""
    plan = FaultPlan(count=2, mode=mode)
    with FlakyProxy(s3_endpoint, plan) as proxy:
        store = _store(proxy.endpoint, bucket)
        stored = _store_all(store, "job-flaky", {f: _artifact(f) for f in ("glb", "stl")})
    assert len([s for s in plan.seen if s[2] == "fault"]) == 2
    assert _keys(s3_endpoint, bucket) == ["meshes/job-flaky/model.glb", "meshes/job-flaky/model.stl"]
    assert stored["glb"].sha256 == _artifact("glb").sha256


def test_exhausted_retries_give_storage_error_and_no_object(s3_endpoint, bucket):
    """When S3 keeps answering 503 the store gives up after its tries: storage_error, nothing stored."""
    plan = FaultPlan(count=1000, mode="503")
    with FlakyProxy(s3_endpoint, plan) as proxy:
        store = _store(proxy.endpoint, bucket)
        with pytest.raises(StorageError) as info:
            store.put("job-down", _artifact("glb"))
    assert info.value.code == "storage_error"
    assert "SlowDown" in str(info.value)
    assert "after 4 tries" in str(info.value)
    assert len(plan.seen) == FAST.attempts
    assert _keys(s3_endpoint, bucket) == []


def test_client_errors_are_not_retried(s3_endpoint):
    """A missing bucket is not transient: one try, then storage_error naming the S3 error code."""
    plan = FaultPlan(count=0)
    with FlakyProxy(s3_endpoint, plan) as proxy:
        store = _store(proxy.endpoint, "no-such-bucket-here")
        with pytest.raises(StorageError) as info:
            store.put("job-x", _artifact("glb"))
    assert "NoSuchBucket" in str(info.value)
    assert len(plan.seen) == 1


def test_a_mesh_changed_after_export_is_refused(s3_endpoint, bucket):
    """An artifact whose bytes no longer match its sha256 is not published."""
    art = _artifact("glb")
    forged = Artifact(format="glb", data=art.data + b"!", content_type=art.content_type, sha256=art.sha256)
    with pytest.raises(StorageError):
        _store(s3_endpoint, bucket).put("job-forged", forged)
    assert _keys(s3_endpoint, bucket) == []


def test_reading_pictures_from_s3(s3_endpoint, bucket):
    """s3:// pictures are read through the store; a missing or oversized object is the input's fault."""
    client = s3_client(s3_endpoint)
    client.put_object(Bucket=bucket, Key="in/picture.png", Body=b"\x89PNG" + b"x" * 100)
    client.put_object(Bucket=bucket, Key="in/huge.png", Body=b"x" * 5000)
    store = _store(s3_endpoint, bucket, max_read_bytes=4096)
    assert store.read_object(bucket, "in/picture.png") == b"\x89PNG" + b"x" * 100
    with pytest.raises(InvalidInput) as missing:
        store.read_object(bucket, "in/absent.png")
    assert missing.value.field == "image"
    assert "NoSuchKey" in str(missing.value)
    with pytest.raises(InvalidInput) as huge:
        store.read_object(bucket, "in/huge.png")
    assert "4096" in str(huge.value)


def test_reads_are_retried_too(s3_endpoint, bucket):
    """A read that meets two 503s still returns the object."""
    s3_client(s3_endpoint).put_object(Bucket=bucket, Key="in/p.png", Body=b"picture")
    plan = FaultPlan(count=2, matches=lambda method, path: method == "GET")
    with FlakyProxy(s3_endpoint, plan) as proxy:
        assert _store(proxy.endpoint, bucket).read_object(bucket, "in/p.png") == b"picture"
    assert [s[2] for s in plan.seen] == ["fault", "fault", "ok"]


@pytest.mark.parametrize("job_id", ["../etc", "a/b", "", ".hidden", "x" * 300])
def test_job_ids_that_could_escape_the_prefix_are_refused(s3_endpoint, bucket, job_id):
    """A job id is one path segment: '..', '/', a leading dot or a huge length are refused up front."""
    with pytest.raises(InvalidInput) as info:
        _store(s3_endpoint, bucket).put(job_id, _artifact("glb"))
    assert info.value.field == "id"
    assert _keys(s3_endpoint, bucket) == []


def test_without_a_bucket_the_store_refuses_to_build():
    """S3Store.from_settings needs ORFEAS_S3_BUCKET and says so."""
    with pytest.raises(StorageError) as info:
        S3Store.from_settings(Settings())
    assert info.value.field == "ORFEAS_S3_BUCKET"


def test_a_malformed_endpoint_is_a_storage_error_naming_the_variable():
    """A BUCKET_ENDPOINT_URL botocore cannot use fails the upload with storage_error on that variable."""
    store = S3Store.from_settings(_settings("not a url", "some-bucket"))
    store.prewarm()
    with pytest.raises(StorageError) as info:
        store.put("job-x", _artifact("glb"))
    assert info.value.field == "BUCKET_ENDPOINT_URL"


def test_without_bucket_keys_the_standard_aws_chain_signs(s3_endpoint, bucket, monkeypatch):
    """No BUCKET_ACCESS_KEY_ID/SECRET: boto3's own chain (here AWS_* variables) supplies the keys."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "chain-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "chain-secret")
    settings = Settings(bucket_endpoint_url=s3_endpoint, s3_bucket=bucket, s3_region=REGION)
    store = S3Store.from_settings(settings)
    item = store.put("job-chain", _artifact("stl"))
    assert "X-Amz-Credential=chain-key%2F" in item.url
    assert _keys(s3_endpoint, bucket) == ["orfeas/job-chain/model.stl"]
