"""The artifact store contract: where a job's meshes go, under keys fixed by the job id.

Keys are `{prefix}/{job_id}/model.{fmt}`, so a retried job writes the same keys and overwrites
its own objects instead of leaving duplicates. A store also reads `s3://` pictures, so the
pipeline's `object_reader` and the uploads share one set of credentials and one retry policy.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, Protocol

from orfeas.errors import InvalidInput
from orfeas.types import Artifact

# RunPod job ids are "<uuid>-<region>" or "sync-<uuid>-<region>"; local tests use "test-<uuid>".
# Anything that could climb out of the prefix ("..", "/") or is absurdly long is refused.
_JOB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")

# Five formats at most per job; one thread each so the uploads overlap instead of queueing.
MAX_UPLOAD_THREADS = 8


@dataclass(frozen=True)
class StoredArtifact:
    """Where one mesh went and how to fetch it."""

    format: str
    key: str
    url: str
    bytes: int
    sha256: str
    content_type: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "url": self.url,
            "bytes": self.bytes,
            "sha256": self.sha256,
            "content_type": self.content_type,
        }


def check_job_id(job_id: str) -> str:
    """Return the job id if it is safe as one path segment of a key, else raise InvalidInput."""
    if not isinstance(job_id, str) or not _JOB_ID.fullmatch(job_id) or ".." in job_id:
        raise InvalidInput(f"job id {job_id!r} cannot name a storage folder", field="id")
    return job_id


def artifact_key(prefix: str, job_id: str, fmt: str) -> str:
    """The deterministic key of a job's mesh in one format."""
    name = f"{check_job_id(job_id)}/model.{fmt}"
    prefix = prefix.strip("/")
    return f"{prefix}/{name}" if prefix else name


class ArtifactStore(Protocol):
    """Where meshes are kept: an S3 bucket, or a local directory for local use."""

    def put(self, job_id: str, artifact: Artifact, *, presign_seconds: int | None = None) -> StoredArtifact:
        """Store one mesh under its deterministic key and say where it is."""
        ...

    def read_object(self, bucket: str, key: str) -> bytes:
        """Bytes of `s3://bucket/key` (a picture given by the request)."""
        ...


class Uploads:
    """A job's uploads, started one by one as its meshes are exported (`start`, callable from any
    thread), so they overlap the export of the other formats; `results` waits for them all.

    Use it as a context manager: leaving waits for every upload still running, also when the
    job failed meanwhile, so none is left running behind the job's report.
    """

    def __init__(self, store: ArtifactStore, job_id: str, *, presign_seconds: int | None = None) -> None:
        self._store = store
        self._job_id = check_job_id(job_id)
        self._presign_seconds = presign_seconds
        self._pool = ThreadPoolExecutor(max_workers=MAX_UPLOAD_THREADS, thread_name_prefix="upload")
        self._futures: dict[str, Future[StoredArtifact]] = {}

    def start(self, artifact: Artifact) -> None:
        """Begin storing `artifact` (at most once per format)."""
        if artifact.format not in self._futures:
            self._futures[artifact.format] = self._pool.submit(
                self._store.put, self._job_id, artifact, presign_seconds=self._presign_seconds
            )

    def results(self, artifacts: Mapping[str, Artifact]) -> dict[str, StoredArtifact]:
        """Every mesh of `artifacts` stored (any not started yet is started now); the first failure
        is raised once all have ended."""
        for artifact in artifacts.values():
            self.start(artifact)
        wait([self._futures[fmt] for fmt in artifacts])
        return {fmt: self._futures[fmt].result() for fmt in artifacts}

    def __enter__(self) -> Uploads:
        return self

    def __exit__(self, *exc: object) -> None:
        self._pool.shutdown(wait=True)
