"""diffusers text-to-image backend on the CPU with a tiny random-weight Stable Diffusion pipeline."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from orfeas.deadline import Deadline
from orfeas.errors import BackendUnavailable, ModelUnavailable, OutOfMemory
from orfeas.gpu.text_to_image import DiffusersTextToImage, SamplerParams, sampler_params
from orfeas.gpu.tiny_models import write_tiny_text_to_image
from orfeas.types import StageContext
from tests.gpu_support import cpu_settings, oom_on_forward, torch

MODEL = "tiny/sd-turbo"
TWO_STEPS = SamplerParams(steps=2, guidance=0.0)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("models")
    write_tiny_text_to_image(root, MODEL)
    return root


def make_ctx(settings, reports: list[float], seed: int | None = 1) -> StageContext:
    return StageContext(
        job_id="j",
        stage="text_to_image",
        settings=settings,
        report=reports.append,
        deadline=Deadline(60),
        seed=seed,
    )


def test_prompt_gives_a_picture_with_progress_per_step(model_dir):
    """Two denoising steps report 0.5 and 1.0 through callback_on_step_end; an RGB picture comes out."""
    settings = cpu_settings(model_dir=model_dir, text_to_image_model=MODEL)
    backend = DiffusersTextToImage(settings, params=TWO_STEPS)
    reports: list[float] = []
    image = backend.generate("the cube", make_ctx(settings, reports))
    assert image.mode == "RGB"
    assert image.size == (16, 16)  # the tiny UNet's 8×8 latents, decoded ×2 by the VAE
    assert reports == [0.5, 1.0]
    pipeline = backend.load()
    assert pipeline.unet.dtype == torch.float32
    assert pipeline.unet.device.type == "cpu"


def test_seed_makes_it_reproducible(model_dir):
    """The same seed gives the same pixels."""
    settings = cpu_settings(model_dir=model_dir, text_to_image_model=MODEL)
    backend = DiffusersTextToImage(settings, params=TWO_STEPS)
    a = np.asarray(backend.generate("the cube", make_ctx(settings, [], seed=9)))
    b = np.asarray(backend.generate("the cube", make_ctx(settings, [], seed=9)))
    np.testing.assert_array_equal(a, b)


def test_distilled_models_sample_in_few_steps_without_guidance():
    """turbo/schnell names get 4 unguided steps; others 30 guided ones."""
    assert sampler_params("stabilityai/sdxl-turbo") == SamplerParams(4, 0.0)
    assert sampler_params("black-forest-labs/FLUX.1-schnell") == SamplerParams(4, 0.0)
    assert sampler_params("stabilityai/stable-diffusion-2-1").steps == 30


def test_unset_model_is_backend_unavailable():
    """Without ORFEAS_TEXT_TO_IMAGE_MODEL the backend refuses clearly, naming the prompt field."""
    with pytest.raises(BackendUnavailable) as info:
        DiffusersTextToImage(cpu_settings())
    assert info.value.field == "prompt"


def test_missing_model_is_model_unavailable(tmp_path):
    """A configured model that is not on disk is model_unavailable, looked up without the network."""
    settings = cpu_settings(model_dir=tmp_path, text_to_image_model="stabilityai/sdxl-turbo")
    with pytest.raises(ModelUnavailable) as info:
        DiffusersTextToImage(settings).load()
    assert info.value.model == "stabilityai/sdxl-turbo"
    assert "model_index.json" in str(info.value)


def test_out_of_memory_in_the_unet(model_dir, monkeypatch):
    """A CUDA OOM inside the UNet's forward is out_of_memory for the text_to_image stage."""
    from diffusers import UNet2DConditionModel

    oom_on_forward(monkeypatch, UNet2DConditionModel)
    settings = cpu_settings(model_dir=model_dir, text_to_image_model=MODEL)
    with pytest.raises(OutOfMemory) as info:
        DiffusersTextToImage(settings, params=TWO_STEPS).generate("the cube", make_ctx(settings, []))
    assert info.value.stage == "text_to_image"


def test_attention_is_sdpa_and_xformers_is_not_imported(model_dir):
    """Every attention processor of the loaded UNet is an SDPA one; no xformers module is loaded."""
    settings = cpu_settings(model_dir=model_dir, text_to_image_model=MODEL)
    pipeline = DiffusersTextToImage(settings, params=TWO_STEPS).load()
    names = {type(p).__name__ for p in pipeline.unet.attn_processors.values()}
    assert names == {"AttnProcessor2_0"}
    assert not [m for m in sys.modules if m.split(".")[0] == "xformers"]
