"""Hunyuan3D shape backend on the CPU with a tiny random-weight DiT + ShapeVAE in the published layout."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import trimesh
from PIL import Image

from orfeas.deadline import Deadline
from orfeas.errors import BackendUnavailable, ModelUnavailable, OutOfMemory, StageFailed, StageTimeout
from orfeas.gpu.hunyuan_shape import HunyuanShapeBackend, ShapeParams
from orfeas.gpu.tiny_models import write_tiny_hunyuan, write_tiny_vae
from orfeas.registry import Backends
from orfeas.request import JobRequest
from orfeas.types import Cutout, StageContext
from tests.gpu_support import cpu_settings, torch

TINY = ShapeParams(steps=2, octree_resolution=16, guidance=5.0)
REQUEST = JobRequest(image="unused", backend="hunyuan")


def tiny_plan(_quality: int) -> ShapeParams:
    return TINY


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("models")
    write_tiny_hunyuan(root)
    return root


@pytest.fixture
def cutout() -> Cutout:
    """A red disc on transparency, off-centre so the picture box is asymmetric."""
    yy, xx = np.mgrid[:48, :64]
    mask = (yy - 20) ** 2 + (xx - 24) ** 2 < 12**2
    rgba = np.zeros((48, 64, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[..., 3] = mask * 255
    return Cutout(Image.fromarray(rgba, "RGBA"), mask, "alpha")


def make_ctx(settings, reports: list[float] | None = None, seed: int | None = 0, limit: float = 60.0):
    sink = reports.append if reports is not None else (lambda f: None)
    return StageContext(
        job_id="j", stage="shape", settings=settings, report=sink, deadline=Deadline(limit), seed=seed
    )


def test_generates_a_standing_mesh_with_progress_per_step(model_dir, cutout):
    """Two denoising steps report twice, the mesh is a trimesh, and the result says how it was made."""
    settings = cpu_settings(model_dir=model_dir)
    backend = HunyuanShapeBackend(settings, params=tiny_plan)
    reports: list[float] = []
    result = backend.generate(cutout, REQUEST, make_ctx(settings, reports))
    assert isinstance(result.mesh, trimesh.Trimesh)
    assert len(result.mesh.faces) > 0
    assert result.stands is True
    assert reports[:2] == [pytest.approx(0.45), pytest.approx(0.9)]
    assert reports == sorted(reports)
    assert result.meta["steps"] == 2
    assert result.meta["octree_resolution"] == 16
    assert result.meta["dtype"] == "fp32"
    assert result.meta["device"] == "cpu"
    assert result.meta["vram_peak_mb"] is None  # no CUDA here
    x0, y0, x1, y1 = result.picture_box
    (mx0, my0, _), (mx1, my1, _) = result.mesh.bounds
    assert x0 <= mx0
    assert y0 <= my0
    assert x1 >= mx1
    assert y1 >= my1
    # The disc sits left of centre and above it: more picture to the right and below.
    assert x1 - mx1 > mx0 - x0
    assert my0 - y0 > y1 - my1


def test_same_seed_same_mesh(model_dir, cutout):
    """The request's seed drives the sampler's noise: two runs give the same vertices."""
    settings = cpu_settings(model_dir=model_dir)
    backend = HunyuanShapeBackend(settings, params=tiny_plan)
    a = backend.generate(cutout, REQUEST, make_ctx(settings, seed=5)).mesh
    b = backend.generate(cutout, REQUEST, make_ctx(settings, seed=5)).mesh
    np.testing.assert_array_equal(a.vertices, b.vertices)


def test_weights_move_to_the_chosen_dtype(model_dir, cutout):
    """ORFEAS_DTYPE=bf16 casts every component; the mesh still comes out and meta says bf16."""
    settings = cpu_settings(model_dir=model_dir, dtype="bf16")
    backend = HunyuanShapeBackend(settings, params=tiny_plan)
    pipeline = backend.load()
    for part in (pipeline.model, pipeline.vae, pipeline.conditioner):
        assert {p.dtype for p in part.parameters()} == {torch.bfloat16}
        assert {p.device.type for p in part.parameters()} == {"cpu"}
    assert backend.generate(cutout, REQUEST, make_ctx(settings)).meta["dtype"] == "bf16"


def test_flat_field_is_an_empty_surface(tmp_path, cutout):
    """A decoder whose occupancy never crosses zero gives stage_failed: empty surface, not a crash."""
    folder = write_tiny_hunyuan(tmp_path)
    ckpt = folder / "model.fp16.safetensors"
    tensors = safetensors.torch.load_file(str(ckpt))
    tensors["vae.geo_decoder.output_proj.weight"].zero_()
    tensors["vae.geo_decoder.output_proj.bias"].fill_(1.0)
    safetensors.torch.save_file(tensors, str(ckpt))
    settings = cpu_settings(model_dir=tmp_path)
    with pytest.raises(StageFailed, match="empty surface") as info:
        HunyuanShapeBackend(settings, params=tiny_plan).generate(cutout, REQUEST, make_ctx(settings))
    assert info.value.code == "stage_failed"
    assert info.value.stage == "shape"


def test_missing_model_is_model_unavailable(tmp_path, cutout):
    """No weights where they are looked for: model_unavailable naming the model and the folder."""
    settings = cpu_settings(model_dir=tmp_path)
    with pytest.raises(ModelUnavailable) as info:
        HunyuanShapeBackend(settings).generate(cutout, REQUEST, make_ctx(settings))
    assert info.value.model == "tencent/Hunyuan3D-2"
    assert "hunyuan3d-dit-v2-0" in str(info.value.path)


def test_eager_load_reports_a_missing_model_at_construction(tmp_path):
    """With ORFEAS_EAGER_LOAD the worker fails at start, not on its first job."""
    with pytest.raises(ModelUnavailable):
        HunyuanShapeBackend(cpu_settings(model_dir=tmp_path, eager_load=True))


def test_out_of_memory_in_the_dit_becomes_out_of_memory(model_dir, cutout, monkeypatch):
    """A CUDA OOM raised inside the DiT's forward is out_of_memory for the shape stage."""
    from hy3dgen.shapegen.models import Hunyuan3DDiT

    def explode(self, *args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(Hunyuan3DDiT, "forward", explode)
    settings = cpu_settings(model_dir=model_dir)
    with pytest.raises(OutOfMemory) as info:
        HunyuanShapeBackend(settings, params=tiny_plan).generate(cutout, REQUEST, make_ctx(settings))
    assert info.value.code == "out_of_memory"
    assert info.value.stage == "shape"


def test_deadline_is_checked_between_steps(model_dir, cutout):
    """A stage past its deadline stops at the first denoising step with stage_timeout."""
    settings = cpu_settings(model_dir=model_dir)
    backend = HunyuanShapeBackend(settings, params=tiny_plan)
    backend.load()
    with pytest.raises(StageTimeout):
        backend.generate(cutout, REQUEST, make_ctx(settings, limit=0.0))


def test_flashvdm_uses_the_baked_turbo_vae_and_hierarchical_decoding(tmp_path, cutout):
    """ORFEAS_FLASHVDM swaps in the turbo VAE folder and FlashVDM's volume decoder."""
    from hy3dgen.shapegen.models.autoencoders import FlashVDMVolumeDecoding

    write_tiny_hunyuan(tmp_path)
    write_tiny_vae(tmp_path, "tencent/Hunyuan3D-2", "hunyuan3d-vae-v2-0-turbo")
    settings = cpu_settings(model_dir=tmp_path, flashvdm=True)
    backend = HunyuanShapeBackend(settings, params=lambda q: ShapeParams(2, 64, 5.0))
    pipeline = backend.load()
    assert isinstance(pipeline.vae.volume_decoder, FlashVDMVolumeDecoding)
    result = backend.generate(cutout, REQUEST, make_ctx(settings))
    assert result.meta["flashvdm"] is True
    assert len(result.mesh.faces) > 0


def test_registry_builds_the_backend_once(model_dir):
    """`hunyuan` in the registry is this backend, built once and shared by later jobs."""
    backends = Backends(cpu_settings(model_dir=model_dir))
    first = backends.shape("hunyuan")
    assert isinstance(first, HunyuanShapeBackend)
    assert backends.shape("hunyuan") is first


def test_xformers_never_imported(model_dir, cutout):
    """After loading and running the shape pipeline, no xformers module was imported."""
    settings = cpu_settings(model_dir=model_dir)
    HunyuanShapeBackend(settings, params=tiny_plan).generate(cutout, REQUEST, make_ctx(settings))
    assert not [m for m in sys.modules if m.split(".")[0] == "xformers"]


def test_missing_hy3dgen_is_backend_unavailable(model_dir, cutout, monkeypatch):
    """Without hy3dgen installed, the hunyuan backend says so instead of failing the stage obscurely."""
    for name in [m for m in sys.modules if m == "hy3dgen" or m.startswith("hy3dgen.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "hy3dgen", None)  # `import hy3dgen` now raises ImportError
    settings = cpu_settings(model_dir=model_dir)
    with pytest.raises(BackendUnavailable, match=r"hy3dgen\.shapegen") as info:
        HunyuanShapeBackend(settings, params=tiny_plan).generate(cutout, REQUEST, make_ctx(settings))
    assert info.value.code == "backend_unavailable"


def test_an_offloaded_pipeline_comes_back_to_its_device_for_the_next_job(model_dir, cutout):
    """After `offload` the weights are in host memory; the next generate moves them back and
    gives the same mesh as before."""
    settings = cpu_settings(model_dir=model_dir)
    backend = HunyuanShapeBackend(settings, params=tiny_plan)
    before = backend.generate(cutout, REQUEST, make_ctx(settings)).mesh
    moves: list[str] = []
    pipeline = backend.load()
    original_to = pipeline.to
    pipeline.to = lambda device=None, dtype=None: (moves.append(str(device)), original_to(device, dtype))[1]
    backend.offload()
    backend.offload()  # a second call moves nothing
    after = backend.generate(cutout, REQUEST, make_ctx(settings)).mesh
    assert moves == ["cpu", "cpu"]  # off to the host, then back to the backend's device (the CPU here)
    assert not backend.resident()  # a CPU backend never holds device memory
    np.testing.assert_allclose(after.vertices, before.vertices)
