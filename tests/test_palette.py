"""The palette of flat-colour pictures: its real colours, every pixel's label, photos told apart."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from orfeas.errors import InvalidInput
from orfeas.request import parse_request
from orfeas.samples import logos
from orfeas.texture.palette import find_palette, merge_specks
from orfeas.types import Cutout
from tests.shape_support import cutout_from, gradient_photo, ring_mask


def _cutout(sample: logos.Sample) -> Cutout:
    rgba = np.asarray(sample.image.convert("RGBA"))
    mask = sample.labels >= 0
    return cutout_from(mask, rgba[..., :3], "alpha")


def _truth_match(palette, sample: logos.Sample) -> float:
    """Share of foreground pixels whose palette colour is the truth's (colours matched nearest)."""
    d = ((palette.colours[:, None, :].astype(int) - sample.colours[None].astype(int)) ** 2).sum(-1)
    same = d.argmin(axis=1)
    fg = (sample.labels >= 0) & (palette.labels >= 0)
    return float((same[palette.labels[fg]] == sample.labels[fg]).mean())


def test_anti_aliased_icon_gives_its_true_colours() -> None:
    """An anti-aliased three-colour icon has three palette colours, each within 2 levels of the
    truth, and its edge pixels snap to them: 99.5 % of the pixels carry their true colour."""
    sample = logos.icon()
    palette = find_palette(_cutout(sample), 4)
    assert palette is not None
    assert len(palette) == len(sample.colours) == 3
    for colour in sample.colours.astype(int):
        assert np.abs(palette.colours.astype(int) - colour).max(axis=1).min() <= 2
    assert _truth_match(palette, sample) > 0.995


@pytest.mark.parametrize("name", ["logo", "smiley", "letter_tile", "thin_text"])
def test_generated_pictures_give_their_colour_count(name: str) -> None:
    """Every flat-colour sample, thin anti-aliased text included, has exactly its true colour count."""
    sample = logos.ALL[name]()
    palette = find_palette(_cutout(sample), 4)
    assert palette is not None
    assert len(palette) == len(sample.colours)
    assert _truth_match(palette, sample) > 0.99


def test_a_jpeg_logo_keeps_its_two_colours() -> None:
    """JPEG noise (quality 85) on a two-colour logo neither adds colours nor makes it a photo."""
    sample = logos.logo_on_white()
    buffer = io.BytesIO()
    sample.image.convert("RGB").save(buffer, format="JPEG", quality=85)
    rgb = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
    palette = find_palette(cutout_from(sample.labels >= 0, rgb, "border"), 4)
    assert palette is not None
    assert len(palette) == 2


@pytest.mark.parametrize("kind", ["ball", "noisy ramp"])
def test_photos_have_no_palette(kind: str) -> None:
    """A shaded ball and a noisy colour ramp are photos: no palette, so colours stay projected."""
    if kind == "ball":
        cutout = _cutout(logos.ball())
    else:
        mask = ring_mask()
        cutout = cutout_from(mask, gradient_photo(*mask.shape))
    assert find_palette(cutout, 16) is None


def test_max_colors_caps_the_palette() -> None:
    """With max_colors 2 the three-colour icon is cut into two colours, every pixel labelled."""
    sample = logos.icon()
    palette = find_palette(_cutout(sample), 2)
    assert palette is not None
    assert len(palette) == 2
    assert np.all((palette.labels >= 0) == (sample.labels >= 0))


def test_one_colour_needs_no_more() -> None:
    """max_colors 1 gives one colour covering the whole foreground."""
    palette = find_palette(_cutout(logos.logo()), 1)
    assert palette is not None
    assert len(palette) == 1
    assert np.all(palette.labels[palette.labels >= 0] == 0)


@pytest.mark.parametrize("value", [0, 17, "4", 2.0])
def test_max_colors_bounds(value: object) -> None:
    """max_colors is an integer from 1 to 16; anything else is invalid input naming the field."""
    with pytest.raises(InvalidInput) as info:
        parse_request({"image": "x", "max_colors": value})
    assert info.value.field == "max_colors"
    assert parse_request({"image": "x"}).max_colors == 4
    assert parse_request({"image": "x", "max_colors": 16}).max_colors == 16


def test_specks_join_their_neighbour() -> None:
    """A 2×2 speck of one colour inside another takes the surrounding colour; a large area stays."""
    labels = np.zeros((40, 40), dtype=np.int16)
    labels[10:12, 10:12] = 1
    labels[20:35, 20:35] = 1
    labels[0, :] = -1
    merged = merge_specks(labels, 8)
    assert np.all(merged[10:12, 10:12] == 0)
    assert np.all(merged[20:35, 20:35] == 1)
    assert np.all(merged[0] == -1)
