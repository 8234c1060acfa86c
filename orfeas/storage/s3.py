"""Meshes in an S3-compatible bucket (AWS, R2, MinIO), with checksums, retries and presigned URLs.

Each object carries its content type and SHA-256 twice: as `ChecksumSHA256` (S3 verifies it on
arrival and refuses a corrupted body with BadDigest) and as `x-amz-meta-sha256` (hex, readable
by any client, and the only whole-object hash a multipart upload can carry). Uploads above
`multipart_threshold` go through boto3's transfer manager in parts.

botocore's own retries are off: one policy (orfeas.retry_policy) decides, so the bound on tries
and waiting is the one stated there and not a product of two loops.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import threading
import time
from collections.abc import Callable
from typing import Any

from orfeas.errors import InvalidInput, StorageError
from orfeas.retry_policy import STORAGE_BACKOFF, Backoff, is_retryable_storage_error
from orfeas.settings import Settings
from orfeas.storage.base import StoredArtifact, artifact_key
from orfeas.types import Artifact

S3Client = Any  # a boto3 S3 client; boto3 ships no static types

# Below 16 MiB one PUT is faster than a multipart round of create/parts/complete; above it, 8 MiB
# parts (S3 needs ≥ 5 MiB) upload in parallel and a broken connection costs one part, not all.
MULTIPART_THRESHOLD = 16 * 1024 * 1024
MULTIPART_CHUNKSIZE = 8 * 1024 * 1024
# Objects that cannot be the request's fault: the picture is missing or not ours to read.
_NOT_FOUND_CODES = frozenset({"NoSuchKey", "NoSuchBucket", "404", "NotFound", "AccessDenied", "403"})


def make_client(settings: Settings) -> S3Client:
    """A boto3 S3 client from RunPod's bucket variables, else the standard AWS credential chain."""
    import boto3
    from botocore.config import Config

    config = Config(
        region_name=settings.s3_region,
        signature_version="s3v4",
        retries={"total_max_attempts": 1},  # orfeas.retry_policy retries, see above
        connect_timeout=5,
        read_timeout=60,
        max_pool_connections=32,
        # Custom endpoints (MinIO, moto, some R2 setups) want path-style keys.
        s3={"addressing_style": "path" if settings.bucket_endpoint_url else "auto"},
    )
    return boto3.session.Session().client(
        "s3",
        endpoint_url=settings.bucket_endpoint_url,
        aws_access_key_id=settings.bucket_access_key_id,
        aws_secret_access_key=settings.bucket_secret_access_key,
        config=config,
    )


class LazyClient:
    """Builds the boto3 client once, on first use or ahead of it in a background thread.

    Building an S3 client loads botocore's S3 model (about 0.15 s with the boto3 import): done at
    import, that is paid before the worker can even ask for a job; done in the background it
    overlaps the worker's first long poll, and the first upload finds the client ready.
    """

    def __init__(self, factory: Callable[[], S3Client]) -> None:
        self._factory = factory
        self._client: S3Client | None = None
        self._lock = threading.Lock()

    def get(self) -> S3Client:
        with self._lock:
            if self._client is None:
                try:
                    self._client = self._factory()
                except ValueError as exc:  # botocore refuses a malformed endpoint URL this way
                    raise StorageError(
                        f"cannot make the S3 client: {exc}", field="BUCKET_ENDPOINT_URL"
                    ) from exc
            return self._client

    def prewarm(self) -> None:
        def build() -> None:
            with contextlib.suppress(StorageError):  # raised again, to the job, on first use
                self.get()

        threading.Thread(target=build, name="s3-client", daemon=True).start()


class S3Store:
    """An artifact store in one bucket; thread-safe (one boto3 client, shared by the upload threads)."""

    def __init__(
        self,
        client: S3Client | LazyClient,
        bucket: str,
        *,
        prefix: str = "orfeas",
        presign_seconds: int = 3600,
        max_read_bytes: int = 20 * 1024 * 1024,
        multipart_threshold: int = MULTIPART_THRESHOLD,
        multipart_chunksize: int = MULTIPART_CHUNKSIZE,
        backoff: Backoff = STORAGE_BACKOFF,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._client = client if isinstance(client, LazyClient) else LazyClient(lambda: client)
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.presign_seconds = presign_seconds
        self.max_read_bytes = max_read_bytes
        self.multipart_threshold = multipart_threshold
        self.backoff = backoff
        self._sleep = sleep
        self.multipart_chunksize = multipart_chunksize
        self._transfer: Any = None  # boto3's TransferConfig, made on the first multipart upload

    @property
    def client(self) -> S3Client:
        return self._client.get()

    def prewarm(self) -> None:
        """Build the client in the background now rather than on the first job."""
        self._client.prewarm()

    @classmethod
    def from_settings(cls, settings: Settings, client: S3Client | None = None) -> S3Store:
        if not settings.s3_bucket:
            raise StorageError("no bucket configured (ORFEAS_S3_BUCKET)", field="ORFEAS_S3_BUCKET")
        return cls(
            client if client is not None else LazyClient(lambda: make_client(settings)),
            settings.s3_bucket,
            prefix=settings.s3_prefix,
            presign_seconds=settings.presign_seconds,
            max_read_bytes=settings.max_image_bytes,
        )

    # -- writing ------------------------------------------------------------------------
    def put(self, job_id: str, artifact: Artifact, *, presign_seconds: int | None = None) -> StoredArtifact:
        key = artifact_key(self.prefix, job_id, artifact.format)
        digest = hashlib.sha256(artifact.data).digest()
        if digest.hex() != artifact.sha256:
            # The artifact was changed after export: storing it would publish a wrong checksum.
            raise StorageError(f"{artifact.format} mesh does not match its sha256", field=key)
        metadata = {"sha256": artifact.sha256}
        if artifact.size < self.multipart_threshold:
            checksum = base64.b64encode(digest).decode("ascii")
            answer = self._retry(
                lambda: self.client.put_object(
                    Bucket=self.bucket,
                    Key=key,
                    Body=artifact.data,
                    ContentType=artifact.content_type,
                    ChecksumAlgorithm="SHA256",
                    ChecksumSHA256=checksum,
                    Metadata=metadata,
                ),
                f"upload of {key}",
            )
            echoed = answer.get("ChecksumSHA256")
            if echoed is not None and echoed != checksum:
                raise StorageError(f"the store recorded another sha256 for {key}", field="storage")
        else:
            if self._transfer is None:
                from boto3.s3.transfer import TransferConfig

                self._transfer = TransferConfig(
                    multipart_threshold=self.multipart_threshold,
                    multipart_chunksize=self.multipart_chunksize,
                    max_concurrency=4,
                )
            self._retry(
                lambda: self.client.upload_fileobj(
                    io.BytesIO(artifact.data),
                    self.bucket,
                    key,
                    ExtraArgs={
                        "ContentType": artifact.content_type,
                        "ChecksumAlgorithm": "SHA256",
                        "Metadata": metadata,
                    },
                    Config=self._transfer,
                ),
                f"upload of {key}",
            )
        return StoredArtifact(
            format=artifact.format,
            key=key,
            url=self.presign(key, presign_seconds),
            bytes=artifact.size,
            sha256=artifact.sha256,
            content_type=artifact.content_type,
        )

    def presign(self, key: str, seconds: int | None = None) -> str:
        """A GET URL for the object, signed locally (no request is made)."""
        return str(
            self.client.generate_presigned_url(
                "get_object",
                Params={"Bucket": self.bucket, "Key": key},
                ExpiresIn=seconds or self.presign_seconds,
            )
        )

    # -- reading ------------------------------------------------------------------------
    def read_object(self, bucket: str, key: str) -> bytes:
        """The bytes of s3://bucket/key, at most `max_read_bytes`; a missing object is the input's fault."""
        from botocore.exceptions import ClientError

        def fetch() -> bytes:
            response = self.client.get_object(Bucket=bucket, Key=key)
            body = response["Body"]
            try:
                size = int(response.get("ContentLength") or 0)
                if size > self.max_read_bytes:
                    raise InvalidInput(
                        f"s3://{bucket}/{key} is {size} bytes, over the {self.max_read_bytes}-byte limit",
                        field="image",
                    )
                data: bytes = body.read(self.max_read_bytes + 1)
            finally:
                body.close()
            if len(data) > self.max_read_bytes:
                raise InvalidInput(
                    f"s3://{bucket}/{key} is over the {self.max_read_bytes}-byte limit", field="image"
                )
            return data

        try:
            data: bytes = self._retry(fetch, f"read of s3://{bucket}/{key}")
            return data
        except StorageError as exc:
            cause = exc.__cause__
            if isinstance(cause, ClientError) and _code(cause) in _NOT_FOUND_CODES:
                raise InvalidInput(
                    f"s3://{bucket}/{key} cannot be read ({_code(cause)})", field="image"
                ) from None
            raise

    # -- machinery ----------------------------------------------------------------------
    def _retry(self, call: Callable[[], Any], what: str) -> Any:
        """Run `call` under the storage backoff; the last failure becomes StorageError."""
        try:
            for attempt in self.backoff.retrying(is_retryable_storage_error, sleep=self._sleep):
                with attempt:
                    return call()
        except (InvalidInput, StorageError):
            raise
        except Exception as exc:
            tries = self.backoff.attempts if is_retryable_storage_error(exc) else 1
            raise StorageError(
                f"{what} failed after {tries} tries: {_describe(exc)}", field="storage"
            ) from exc
        raise AssertionError("unreachable: tenacity either returns or raises")


def _code(exc: Any) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


def _describe(exc: BaseException) -> str:
    """A short reason without request ids or credentials: the S3 error code, else the error's text."""
    from botocore.exceptions import ClientError

    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ClientError):
            message = cause.response.get("Error", {}).get("Message", "")
            return f"{_code(cause)} {message}".strip()
        cause = cause.__cause__ or cause.__context__
    return f"{type(exc).__name__}: {exc}"
