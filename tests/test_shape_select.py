"""`auto`'s choice between the weights-free shapes: flat-colour cut-outs extrude, cut-out photos of
objects inflate, frame-filling pictures and unsure cut-outs relief."""

from __future__ import annotations

import io
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from orfeas.background.classic import ClassicBackgroundRemover
from orfeas.samples import photos
from orfeas.settings import Settings
from orfeas.shape.select import choose_weights_free, palette_share
from tests.shape_support import cutout_from, emblem_cutout, gradient_photo, letters_mask, make_ctx, ring_mask


def _noisy_flat(mask: np.ndarray, colours: list[tuple[int, int, int]], noise: float = 4.0) -> np.ndarray:
    """Flat colour stripes with JPEG-like noise: one colour per horizontal stripe of the picture."""
    rows, cols = mask.shape
    rgb = np.zeros((rows, cols, 3))
    for i, colour in enumerate(colours):
        rgb[i * rows // len(colours) : (i + 1) * rows // len(colours)] = colour
    rgb += np.random.default_rng(3).normal(0, noise, rgb.shape)
    return np.clip(rgb, 0, 255).astype(np.uint8)


def test_alpha_logo_extrudes() -> None:
    """The bundled emblem (alpha, few colours, background around it) is extruded."""
    assert choose_weights_free(emblem_cutout()) == "extrude"


def test_flat_colour_logo_with_noise_extrudes() -> None:
    """Four flat colours with JPEG-like noise on a border-removed background still count as flat."""
    mask = ring_mask()
    cutout = cutout_from(
        mask, _noisy_flat(mask, [(200, 30, 40), (20, 20, 20), (240, 240, 240), (30, 90, 200)]), "border"
    )
    assert palette_share(cutout) > 0.95
    assert choose_weights_free(cutout) == "extrude"


def test_jpeg_logo_on_white_extrudes() -> None:
    """The emblem flattened onto white and saved as a quality-40 JPEG still counts as flat: extrude."""
    rgba = emblem_cutout().image
    flat = Image.new("RGB", rgba.size, (255, 255, 255))
    flat.paste(rgba, mask=rgba.getchannel("A"))
    data = io.BytesIO()
    flat.save(data, format="JPEG", quality=40)
    ctx, _ = make_ctx("background")
    cutout = ClassicBackgroundRemover(Settings()).remove(Image.open(data).convert("RGB"), ctx)
    assert palette_share(cutout) < 0.9  # the colour clusters alone miss the compression's noise
    assert choose_weights_free(cutout) == "extrude"


def test_thin_lettering_extrudes() -> None:
    """Lettering in one colour is extruded."""
    assert choose_weights_free(cutout_from(letters_mask(), method="border")) == "extrude"


def test_photo_cut_out_is_inflated() -> None:
    """A confidently cut-out subject with photo-like shading becomes a rounded solid, not a flat piece."""
    cutout = cutout_from(ring_mask(180, 240, outer=80, inner=30), gradient_photo(180, 240), "border")
    assert palette_share(cutout) < 0.6
    assert choose_weights_free(cutout) == "inflate"


def test_unsure_cut_out_is_a_relief() -> None:
    """The same subject with a mask the background stage is unsure of is a relief of the picture."""
    cutout = cutout_from(ring_mask(180, 240, outer=80, inner=30), gradient_photo(180, 240), "border")
    assert choose_weights_free(replace(cutout, confidence=0.5)) == "relief"


@pytest.mark.parametrize(
    ("sample", "expected"),
    [
        (photos.ball_on_gradient, "inflate"),
        (photos.photo_jpeg, "inflate"),
        (photos.frame_filling_photo, "relief"),
    ],
)
def test_photos_through_the_background_stage(sample, expected: str) -> None:
    """A photo of an object on a gradient is inflated; a photo that fills the frame stays a relief."""
    ctx, _ = make_ctx("background")
    cutout = ClassicBackgroundRemover(Settings()).remove(sample().image, ctx)
    assert choose_weights_free(cutout) == expected


def test_full_frame_flat_picture_is_a_relief() -> None:
    """A mask covering (nearly) the whole frame gives a relief even with flat colours."""
    mask = np.ones((100, 100), dtype=bool)
    mask[:3] = False
    assert choose_weights_free(cutout_from(mask, method="alpha")) == "relief"


def test_model_mask_is_inflated() -> None:
    """A segmentation model's mask means a photographed subject: inflated, even in flat colours."""
    assert choose_weights_free(cutout_from(ring_mask(), method="u2net")) == "inflate"


def test_empty_mask_is_a_relief() -> None:
    """With no foreground there is nothing to extrude."""
    assert choose_weights_free(cutout_from(np.zeros((40, 40), dtype=bool))) == "relief"


@pytest.mark.parametrize(("n_colours", "expected"), [(3, "extrude"), (6, "extrude"), (12, "inflate")])
def test_palette_size_decides(n_colours: int, expected: str) -> None:
    """Up to six distinct flat colours extrude; a dozen equal ones are a picture, inflated."""
    rng = np.random.default_rng(n_colours)
    colours = [tuple(int(c) for c in rng.integers(0, 256, 3)) for _ in range(n_colours)]
    # Keep them distinct: spread the first channel over the range.
    colours = [(int(i * 255 / max(n_colours - 1, 1)), g, b) for i, (_, g, b) in enumerate(colours)]
    mask = ring_mask(240, 240, outer=110, inner=20)
    cutout = cutout_from(mask, _noisy_flat(mask, colours, noise=2.0), "border")
    assert choose_weights_free(cutout) == expected
