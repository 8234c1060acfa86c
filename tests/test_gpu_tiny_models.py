"""`python -m orfeas tiny-models DIR` writes loadable model folders that run the GPU backends on a CPU."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from orfeas.gpu import hunyuan_shape
from orfeas.pipeline import Pipeline
from orfeas.request import JobRequest
from tests.gpu_support import cpu_settings, torch
from tests.inputs_support import ROOT

# Backends() imports pymeshlab on the main thread (orfeas/registry.py, MAIN_THREAD_IMPORTS); the
# tests need it installed.
pytest.importorskip("pymeshlab")

pytestmark = pytest.mark.slow  # the command writes eight models (about 12 s on one core)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("tiny")
    done = subprocess.run(
        [sys.executable, "-m", "orfeas", "tiny-models", str(root)],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    return root, done.stdout.strip().splitlines()[-1]


def test_the_command_writes_the_published_layouts(tiny_dir):
    """Every folder the backends look for holds its config and weights; the printed line names the root."""
    root, line = tiny_dir
    hunyuan = root / "tencent" / "Hunyuan3D-2"
    assert (hunyuan / "hunyuan3d-dit-v2-0" / "config.yaml").is_file()
    assert (hunyuan / "hunyuan3d-dit-v2-0" / "model.fp16.safetensors").is_file()
    assert (hunyuan / "hunyuan3d-vae-v2-0-turbo" / "config.yaml").is_file()
    assert (root / "tencent" / "Hunyuan3D-2mv" / "hunyuan3d-dit-v2-mv" / "config.yaml").is_file()
    assert (hunyuan / "hunyuan3d-delight-v2-0" / "model_index.json").is_file()
    assert (hunyuan / "hunyuan3d-paint-v2-0" / "unet" / "diffusion_pytorch_model.bin").is_file()
    assert (root / "tiny" / "sd-turbo" / "model_index.json").is_file()
    assert (root / "tiny" / "segformer-fg" / "config.json").is_file()
    assert f"ORFEAS_MODEL_DIR={root.resolve()}" in line
    assert not list(root.rglob("*tokenizer-src*"))


def test_prompt_to_mesh_from_the_written_models(tiny_dir, monkeypatch):
    """Text-to-image, segmentation and the Hunyuan shape backend all load from the folder and make a mesh."""
    root, _ = tiny_dir
    monkeypatch.setattr(hunyuan_shape, "shape_params", lambda q: hunyuan_shape.ShapeParams(2, 16, 5.0))
    settings = cpu_settings(
        model_dir=root,
        text_to_image_model="tiny/sd-turbo",
        segmentation_model="tiny/segformer-fg",
        background_backend="segmentation",
    )
    request = JobRequest(prompt="the cube", backend="hunyuan", formats=("stl",), seed=0)
    result = Pipeline(settings).run(request, job_id="tiny-cmd")
    assert result.backend == "hunyuan"
    assert result.mesh.faces > 0
    assert result.artifacts["stl"].size > 84


# diffusers' Euler-ancestral scheduler (the one hy3dgen uses) calls np.array on a tensor.
@pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
)
def test_delight_and_paint_load_as_hy3dgen_reads_them(tiny_dir):
    """The delight folder loads as InstructPix2Pix, the paint UNet through hy3dgen's own loader."""
    from diffusers import StableDiffusionInstructPix2PixPipeline

    from orfeas.gpu.texgen_import import RENDERER_MODULES, import_texgen_module

    root, _ = tiny_dir
    hunyuan = root / "tencent" / "Hunyuan3D-2"
    delight = StableDiffusionInstructPix2PixPipeline.from_pretrained(str(hunyuan / "hunyuan3d-delight-v2-0"))
    assert delight.unet.config.in_channels == 8
    modules = import_texgen_module("hunyuanpaint.unet.modules")
    unet = modules.UNet2p5DConditionModel.from_pretrained(str(hunyuan / "hunyuan3d-paint-v2-0" / "unet"))
    assert unet.unet.conv_in.in_channels == 12  # latent + normal map + position map, 4 each
    assert unet.unet.class_embedding.weight.shape[1] == 1280
    assert isinstance(unet.unet_dual, torch.nn.Module)
    assert not [m for m in RENDERER_MODULES if m in sys.modules]
