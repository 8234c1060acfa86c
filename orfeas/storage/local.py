"""Meshes in a local directory (`ORFEAS_OUTPUT_DIR`) with `file://` URLs: for use without a bucket."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from orfeas.errors import InvalidInput, StorageError
from orfeas.storage.base import StoredArtifact, artifact_key
from orfeas.types import Artifact


class LocalStore:
    """Writes `{root}/{prefix}/{job_id}/model.{fmt}`; a retried job replaces its own files."""

    def __init__(self, root: Path, *, prefix: str = "orfeas") -> None:
        self.root = Path(root).resolve()
        self.prefix = prefix.strip("/")

    def put(self, job_id: str, artifact: Artifact, *, presign_seconds: int | None = None) -> StoredArtifact:
        key = artifact_key(self.prefix, job_id, artifact.format)
        path = self.root / key
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # Write then rename: a reader never sees half a mesh, and a retry replaces it whole.
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
            try:
                with os.fdopen(fd, "wb") as out:
                    out.write(artifact.data)
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise StorageError(f"cannot write {path}: {exc.strerror or exc}", field="storage") from exc
        return StoredArtifact(
            format=artifact.format,
            key=key,
            url=path.as_uri(),
            bytes=artifact.size,
            sha256=artifact.sha256,
            content_type=artifact.content_type,
        )

    def read_object(self, bucket: str, key: str) -> bytes:
        raise InvalidInput(
            f"s3://{bucket}/{key}: reading s3:// pictures needs a bucket configured (ORFEAS_S3_BUCKET)",
            field="image",
        )
