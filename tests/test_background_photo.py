"""The classic background remover on photo-like pictures with known masks: gradients, vignettes,
texture, JPEG and EXIF rotation (orfeas/samples/photos.py), and the confidence it reports."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from orfeas.background.classic import ClassicBackgroundRemover
from orfeas.inputs.decode import decode_image
from orfeas.samples import photos
from orfeas.settings import Settings
from orfeas.types import Cutout
from tests.shape_support import make_ctx

REMOVER = ClassicBackgroundRemover(Settings())


def remove(sample: photos.PhotoSample) -> tuple[Cutout, list[str]]:
    ctx, _ = make_ctx("background")
    image = decode_image(sample.data, max_pixels=Settings().max_image_pixels)
    return REMOVER.remove(image, ctx), ctx.warnings


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum()) / float((a | b).sum())


@pytest.mark.parametrize(
    ("make", "least"),
    [
        # Measured: 0.993, 0.994, 0.996 (python bench/quality_cutout.py).
        (photos.ball_on_gradient, 0.98),
        (photos.object_on_vignette, 0.98),
        (photos.object_on_texture, 0.98),
        # 0.950: the JPEG's 4:2:0 chroma bleeds the mug's blue 2-4 px into the backdrop above it.
        (photos.photo_jpeg, 0.94),
    ],
)
def test_photo_backdrops_are_removed(make, least: float) -> None:
    """A shaded object on a gradient, vignetted, textured or JPEG backdrop is cut out by the graph cut."""
    sample = make()
    cutout, warnings = remove(sample)
    assert cutout.method == "graphcut"
    assert warnings == []
    assert cutout.mask.shape == sample.truth.shape
    assert iou(cutout.mask, sample.truth) >= least
    assert cutout.confidence >= 0.9


def test_exif_rotated_portrait_is_cut_out_upright() -> None:
    """A portrait stored landscape with EXIF orientation 6 is cut out in its displayed orientation."""
    sample = photos.exif_portrait()
    cutout, _ = remove(sample)
    assert cutout.mask.shape == (480, 360)
    assert iou(cutout.mask, sample.truth) >= 0.98
    assert cutout.confidence >= 0.9


def test_frame_filling_scene_keeps_the_whole_picture() -> None:
    """Hills under a sky have no backdrop: the unsure cut of the hills is dropped for the whole picture."""
    cutout, warnings = remove(photos.frame_filling_photo())
    assert cutout.mask.all()
    assert cutout.confidence == 0.0
    assert len(warnings) == 1
    assert "unsure" in warnings[0]


def test_photo_rim_takes_the_object_colour() -> None:
    """The cut-out's edge pixels carry the ball's colours, not the blend with the backdrop behind it."""
    sample = photos.ball_on_gradient()
    cutout, _ = remove(sample)
    rgb = np.asarray(cutout.image.convert("RGB")).astype(np.float64)
    rim = cutout.mask & ~ndimage.binary_erosion(cutout.mask, iterations=2)
    # The ball is red (R well above G and B); the backdrop is blue to sand (B or G near R).
    redness = rgb[..., 0] - np.maximum(rgb[..., 1], rgb[..., 2])
    assert np.percentile(redness[rim], 5) > 20
    original = np.asarray(sample.image).astype(np.float64)
    assert (np.asarray(cutout.image)[~cutout.mask][:, :3] == original[~cutout.mask]).all()


def test_flat_backdrop_confidence_is_high() -> None:
    """A logo-like shape on a flat backdrop keeps the flood fill's answer, reported as confident."""
    from PIL import Image

    y, x = np.mgrid[0:200, 0:300]
    truth = np.hypot(x - 150, y - 100) < 60
    rgb = np.where(truth[..., None], np.array([30, 60, 200]), np.array([250, 250, 250])).astype(np.uint8)
    ctx, _ = make_ctx("background")
    cutout = REMOVER.remove(Image.fromarray(rgb, "RGB"), ctx)
    assert cutout.method == "border"
    assert cutout.confidence >= 0.95
    assert iou(cutout.mask, truth) > 0.99
