"""Where the worker keeps meshes: an S3 bucket when one is configured, else a local directory."""

from __future__ import annotations

from orfeas.settings import Settings
from orfeas.storage.base import (
    ArtifactStore,
    StoredArtifact,
    Uploads,
    artifact_key,
    check_job_id,
)
from orfeas.storage.local import LocalStore

__all__ = [
    "ArtifactStore",
    "LocalStore",
    "StoredArtifact",
    "Uploads",
    "artifact_key",
    "check_job_id",
    "open_artifact_store",
]


def open_artifact_store(settings: Settings) -> ArtifactStore:
    """The S3 store when `ORFEAS_S3_BUCKET` is set (boto3 is imported only then), else the local one."""
    if settings.s3_bucket:
        from orfeas.storage.s3 import S3Store

        return S3Store.from_settings(settings)
    return LocalStore(settings.output_dir, prefix=settings.s3_prefix)
