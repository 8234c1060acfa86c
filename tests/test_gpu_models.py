"""Model folder resolution: baked directory first, then the Hugging Face cache; never a download."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from orfeas.errors import ModelUnavailable
from orfeas.gpu.models import candidate_dirs, resolve_model_dir
from orfeas.settings import Settings


def _settings(tmp_path, **kw) -> Settings:
    return Settings(hf_home=str(tmp_path / "hf"), **kw)


def _snapshot(tmp_path, repo: str, rev: str) -> object:
    repo_dir = tmp_path / "hf" / "hub" / ("models--" + repo.replace("/", "--"))
    snap = repo_dir / "snapshots" / rev
    snap.mkdir(parents=True)
    return repo_dir, snap


def test_baked_directory_wins_over_the_cache(tmp_path):
    """A folder under ORFEAS_MODEL_DIR/<org>/<name> is used before any cached snapshot."""
    baked = tmp_path / "models" / "tencent" / "Hunyuan3D-2" / "dit"
    baked.mkdir(parents=True)
    (baked / "config.yaml").write_text("x")
    _, snap = _snapshot(tmp_path, "tencent/Hunyuan3D-2", "abc")
    (snap / "dit").mkdir()
    (snap / "dit" / "config.yaml").write_text("x")
    settings = _settings(tmp_path, model_dir=tmp_path / "models")
    assert resolve_model_dir(settings, "tencent/Hunyuan3D-2", subfolder="dit", needs=["config.yaml"]) == baked


def test_cache_snapshot_follows_the_main_ref(tmp_path):
    """In the hub cache the snapshot named by refs/main is chosen, not merely the newest one."""
    repo_dir, old = _snapshot(tmp_path, "org/m", "old")
    _, new = _snapshot(tmp_path, "org/m", "new")
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text("old\n")
    for snap in (old, new):
        (snap / "model_index.json").write_text("{}")
    assert resolve_model_dir(_settings(tmp_path), "org/m", needs=["model_index.json"]) == old


def test_alternative_files_and_missing_file(tmp_path):
    """`a|b` accepts either file; a folder lacking a needed file is not accepted."""
    folder = tmp_path / "models" / "org" / "m"
    folder.mkdir(parents=True)
    (folder / "model.ckpt").write_text("x")
    settings = _settings(tmp_path, model_dir=tmp_path / "models")
    assert resolve_model_dir(settings, "org/m", needs=["model.safetensors|model.ckpt"]) == folder
    with pytest.raises(ModelUnavailable, match=r"config\.yaml"):
        resolve_model_dir(settings, "org/m", needs=["config.yaml"])


def test_missing_model_names_model_and_every_path(tmp_path):
    """A missing model is model_unavailable, naming the model and each place looked in."""
    settings = _settings(tmp_path, model_dir=tmp_path / "models", hf_hub_offline=True)
    with pytest.raises(ModelUnavailable) as info:
        resolve_model_dir(settings, "tencent/Hunyuan3D-2", subfolder="hunyuan3d-dit-v2-0")
    err = info.value
    assert err.code == "model_unavailable"
    assert err.model == "tencent/Hunyuan3D-2"
    assert err.path == str(tmp_path / "models" / "tencent" / "Hunyuan3D-2" / "hunyuan3d-dit-v2-0")
    text = str(err)
    assert str(tmp_path / "hf" / "hub" / "models--tencent--Hunyuan3D-2") in text
    assert "snapshots/<revision>/hunyuan3d-dit-v2-0" in text  # an empty cache: no snapshot to name
    assert "HF_HUB_OFFLINE=1" in text
    assert err.to_dict()["path"] == err.path


def test_local_path_is_taken_as_is(tmp_path):
    """An absolute path as the model name is the only candidate."""
    assert candidate_dirs(_settings(tmp_path, model_dir=tmp_path), str(tmp_path / "x")) == [tmp_path / "x"]


def test_resolution_loads_no_ml_stack(tmp_path):
    """Resolving (and failing to resolve) a model touches only the file system: no torch, no network."""
    code = (
        "import sys, time\n"
        "from orfeas.settings import Settings\n"
        "from orfeas.gpu.models import resolve_model_dir\n"
        "from orfeas.errors import ModelUnavailable\n"
        f"s = Settings(hf_home={str(tmp_path)!r})\n"
        "try:\n    resolve_model_dir(s, 'tencent/Hunyuan3D-2', subfolder='hunyuan3d-dit-v2-0')\n"
        "except ModelUnavailable:\n    pass\n"
        "print(sorted(m for m in ('torch', 'huggingface_hub', 'transformers') if m in sys.modules))\n"
    )

    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
        env={**os.environ, "HF_HUB_OFFLINE": "0"},
    )
    assert out.stdout.strip() == "[]"
