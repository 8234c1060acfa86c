"""The GPU backends inside the real pipeline: prompt → picture → cutout → Hunyuan3D mesh → export."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import pytest
import trimesh

from orfeas.errors import ModelUnavailable, OutOfMemory
from orfeas.gpu import hunyuan_shape
from orfeas.gpu.hunyuan_paint import HunyuanPaintTexture
from orfeas.gpu.tiny_models import write_tiny_hunyuan, write_tiny_segmentation, write_tiny_text_to_image
from orfeas.pipeline import Pipeline
from orfeas.request import JobRequest, parse_request
from tests.gpu_support import cpu_settings, oom_on_forward

EMBLEM = Path(__file__).resolve().parents[1] / "orfeas" / "samples" / "emblem.png"
T2I = "tiny/sd-turbo"
SEG = "tiny/segformer-fg"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("models")
    write_tiny_text_to_image(root, T2I)
    write_tiny_segmentation(root, SEG)
    write_tiny_hunyuan(root)
    return root


@pytest.fixture
def gpu_settings(model_dir):
    return cpu_settings(
        model_dir=model_dir,
        text_to_image_model=T2I,
        segmentation_model=SEG,
        background_backend="segmentation",
        texture_backend="hunyuan_paint",
    )


@pytest.fixture
def tiny_plans(monkeypatch):
    """Small sampler settings for every quality: 2 steps, octree 16 (the real mapping is tested apart)."""
    monkeypatch.setattr(hunyuan_shape, "shape_params", lambda q: hunyuan_shape.ShapeParams(2, 16, 5.0))


def test_prompt_to_meshes_through_every_gpu_stage(gpu_settings, tiny_plans):
    """Each GPU stage runs, paint degrades to vertex colours with a warning, and meshes are exported."""
    events = []
    request = JobRequest(prompt="the cube", backend="hunyuan", formats=("glb", "stl"), seed=0)
    result = Pipeline(gpu_settings).run(request, job_id="gpu-e2e", progress=events.append)
    assert result.backend == "hunyuan"
    assert set(result.artifacts) == {"glb", "stl"}
    assert result.mesh.faces > 0
    assert any("texture degraded" in w for w in result.warnings)
    assert result.extra["shape"]["dtype"] == "fp32"
    assert result.extra["shape"]["steps"] == 2
    stages = [e.stage for e in events]
    assert stages.index("text_to_image") < stages.index("background") < stages.index("shape")
    assert {"text_to_image", "background", "shape", "export"} <= set(result.timings)


def test_out_of_memory_fails_the_job_as_out_of_memory(gpu_settings, tiny_plans, monkeypatch):
    """A CUDA OOM in a stage's model ends the job with out_of_memory (fatal: the worker is recycled)."""
    from transformers import SegformerForSemanticSegmentation

    oom_on_forward(monkeypatch, SegformerForSemanticSegmentation)
    freed = []
    pipeline = Pipeline(gpu_settings)
    monkeypatch.setattr(pipeline.backends, "free_memory", lambda: freed.append(True))
    with pytest.raises(OutOfMemory) as info:
        pipeline.run(JobRequest(prompt="the cube", backend="hunyuan", seed=0))
    assert info.value.code == "out_of_memory"
    assert info.value.stage == "background"
    assert info.value.fatal
    assert freed == [True]


def test_paint_without_its_models_is_model_unavailable(gpu_settings):
    """Without the delight and paint folders the paint backend refuses at construction, naming the folder."""
    with pytest.raises(ModelUnavailable) as info:
        HunyuanPaintTexture(gpu_settings)
    assert info.value.code == "model_unavailable"
    assert "hunyuan3d-delight-v2-0" in str(info.value)


def test_picture_to_a_standing_mesh_through_segmentation_and_hunyuan(gpu_settings, tiny_plans):
    """A picture job decodes, cuts out with the model, makes the Hunyuan3D mesh and stands it on the plate."""
    picture = base64.b64encode(EMBLEM.read_bytes()).decode("ascii")
    request = parse_request(
        {
            "image": picture,
            "backend": "hunyuan",
            "formats": ["stl"],
            "texture": False,
            "seed": 0,
            "dimensions": {"height_mm": 50.0},
        }
    )
    events = []
    result = Pipeline(gpu_settings).run(request, job_id="gpu-picture", progress=events.append)
    stages = [e.stage for e in events]
    assert "text_to_image" not in stages
    assert stages.index("input") < stages.index("background") < stages.index("shape") < stages.index("export")
    assert result.backend == "hunyuan"
    assert result.extra["shape"]["octree_resolution"] == 16
    assert result.mesh.extents_mm[2] == pytest.approx(50.0, rel=0.01)
    stl = trimesh.load(file_obj=io.BytesIO(result.artifacts["stl"].data), file_type="stl")
    assert len(stl.faces) == result.mesh.faces
    assert stl.bounds[0][2] == pytest.approx(0.0, abs=1e-6)
    assert stl.bounds[0][:2] == pytest.approx(-stl.bounds[1][:2], abs=1e-6)  # centred on x = y = 0
