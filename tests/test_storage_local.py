"""The local directory store used when no bucket is configured."""

from __future__ import annotations

import hashlib
import os

import pytest

from orfeas.errors import InvalidInput, StorageError
from orfeas.settings import Settings
from orfeas.storage import LocalStore, Uploads, open_artifact_store
from orfeas.types import Artifact


def _store_all(store, job_id, artifacts):
    """Every mesh of a job stored in parallel, as the worker does."""
    with Uploads(store, job_id) as uploads:
        return uploads.results(artifacts)


def _artifact(fmt: str, data: bytes) -> Artifact:
    return Artifact(format=fmt, data=data, content_type="model/stl", sha256=hashlib.sha256(data).hexdigest())


def test_meshes_are_written_under_deterministic_paths_with_file_urls(tmp_path):
    """Each mesh goes to {root}/{prefix}/{job}/model.{fmt}; the URL is that file's file:// URL."""
    store = LocalStore(tmp_path, prefix="out")
    stored = _store_all(
        store, "job-1", {"stl": _artifact("stl", b"solid a"), "obj": _artifact("obj", b"v 0 0 0")}
    )
    for fmt, item in stored.items():
        path = tmp_path / "out" / "job-1" / f"model.{fmt}"
        assert item.key == f"out/job-1/model.{fmt}"
        assert item.url == path.as_uri()
        assert hashlib.sha256(path.read_bytes()).hexdigest() == item.sha256


def test_a_rerun_replaces_the_file_and_leaves_no_temporary_files(tmp_path):
    """Writing the same job again replaces the mesh whole; no partial or temporary file stays behind."""
    store = LocalStore(tmp_path)
    store.put("job-2", _artifact("stl", b"first"))
    store.put("job-2", _artifact("stl", b"second"))
    folder = tmp_path / "orfeas" / "job-2"
    assert sorted(os.listdir(folder)) == ["model.stl"]
    assert (folder / "model.stl").read_bytes() == b"second"


def test_an_unwritable_directory_is_a_storage_error(tmp_path):
    """A root that is a file cannot hold meshes: storage_error, not an OSError traceback."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StorageError) as info:
        LocalStore(blocker).put("job-3", _artifact("stl", b"x"))
    assert info.value.code == "storage_error"


def test_s3_pictures_need_a_bucket(tmp_path):
    """Without a bucket, an s3:// picture is refused as invalid_input on the image, naming the setting."""
    with pytest.raises(InvalidInput) as info:
        LocalStore(tmp_path).read_object("bucket", "key.png")
    assert info.value.field == "image"
    assert "ORFEAS_S3_BUCKET" in info.value.message


def test_open_store_picks_the_local_store_without_a_bucket(tmp_path):
    """No ORFEAS_S3_BUCKET: the output directory store, rooted at ORFEAS_OUTPUT_DIR."""
    store = open_artifact_store(Settings(output_dir=tmp_path))
    assert isinstance(store, LocalStore)
    assert store.root == tmp_path.resolve()
