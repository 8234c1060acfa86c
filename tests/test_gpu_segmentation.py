"""Segmentation background remover on the CPU with a tiny random-weight SegFormer, and its output reading."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from orfeas.deadline import Deadline
from orfeas.errors import BackendUnavailable, ModelUnavailable, OutOfMemory
from orfeas.gpu.segmentation import SegmentationBackgroundRemover, foreground_probability
from orfeas.gpu.tiny_models import write_tiny_segmentation
from orfeas.types import StageContext
from tests.gpu_support import cpu_settings, oom_on_forward, torch

MODEL = "tiny/segformer-fg"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("models")
    write_tiny_segmentation(root, MODEL)
    return root


def make_ctx(settings, reports: list[float]) -> StageContext:
    return StageContext(
        job_id="j", stage="background", settings=settings, report=reports.append, deadline=Deadline(60)
    )


def picture() -> Image.Image:
    rng = np.random.default_rng(3)
    return Image.fromarray(rng.integers(0, 255, (40, 56, 3), dtype=np.uint8), "RGB")


def test_cutout_from_the_model(model_dir):
    """The cutout keeps the picture's size, its alpha is the mask, and `method` names the model."""
    settings = cpu_settings(model_dir=model_dir, segmentation_model=MODEL)
    remover = SegmentationBackgroundRemover(settings)
    reports: list[float] = []
    cutout = remover.remove(picture(), make_ctx(settings, reports))
    assert cutout.method == MODEL
    assert cutout.mask.shape == (40, 56)
    assert cutout.mask.dtype == bool
    assert cutout.mask.any()
    alpha = np.asarray(cutout.image)[..., 3]
    np.testing.assert_array_equal(alpha == 255, cutout.mask)
    np.testing.assert_array_equal(np.asarray(cutout.image)[..., :3], np.asarray(picture()))
    assert reports == sorted(reports)
    assert remover.load().config.model_type == "segformer"


def test_two_class_logits_use_one_minus_background():
    """Class logits: foreground probability is 1 − softmax of class 0."""
    logits = torch.zeros(1, 2, 2, 2)
    logits[0, 1, 0, 0] = 10.0  # foreground wins at (0, 0)
    prob = foreground_probability(type("Out", (), {"logits": logits})())
    assert prob[0, 0] > 0.99
    assert prob[1, 1] == pytest.approx(0.5)


def test_single_channel_side_outputs_use_the_last():
    """BiRefNet-style list of single-channel logits: the finest (last) through a sigmoid."""
    coarse = torch.full((1, 1, 2, 2), -10.0)
    fine = torch.tensor([[[[10.0, -10.0], [-10.0, 10.0]]]])
    prob = foreground_probability([coarse, fine])
    assert (prob > 0.5).tolist() == [[True, False], [False, True]]


def test_unset_and_missing_models():
    """No model configured is backend_unavailable; a configured but absent one is model_unavailable."""
    with pytest.raises(BackendUnavailable):
        SegmentationBackgroundRemover(cpu_settings())
    with pytest.raises(ModelUnavailable, match=r"briaai/RMBG-2\.0"):
        SegmentationBackgroundRemover(cpu_settings(segmentation_model="briaai/RMBG-2.0")).load()


def test_out_of_memory_in_the_model(model_dir, monkeypatch):
    """A CUDA OOM in the segmentation forward is out_of_memory for the background stage."""
    from transformers import SegformerForSemanticSegmentation

    oom_on_forward(monkeypatch, SegformerForSemanticSegmentation)
    settings = cpu_settings(model_dir=model_dir, segmentation_model=MODEL)
    with pytest.raises(OutOfMemory) as info:
        SegmentationBackgroundRemover(settings).remove(picture(), make_ctx(settings, []))
    assert info.value.stage == "background"
