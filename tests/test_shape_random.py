"""Random blobby masks (many parts, holes, saddles, specks): both shapes always come out closed."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from orfeas.request import JobRequest
from orfeas.settings import Settings
from orfeas.shape.extrude import THICKNESS_RATIO, ExtrudeBackend
from orfeas.shape.relief import ReliefBackend
from tests.shape_support import assert_closed_solid, cutout_from, gradient_photo, make_ctx


def _blobs(seed: int, specks: bool) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rows, cols = (int(v) for v in rng.integers(60, 300, 2))
    field = gaussian_filter(rng.normal(size=(rows, cols)), rng.uniform(3, 10))
    mask = field > np.quantile(field, rng.uniform(0.35, 0.75))
    if specks:
        mask |= rng.random(mask.shape) < 0.01
    return mask


@pytest.mark.parametrize("seed", range(8))
def test_extrude_of_random_blobs_is_closed_with_the_masks_area(seed: int) -> None:
    """Extruding random blobs gives a closed solid whose volume is the mask's area × thickness (±4 %)."""
    mask = _blobs(seed, specks=False)
    ctx, _ = make_ctx()
    # The blobs alone (no backing plate joining them, see test_shape_backing.py).
    request = JobRequest(image="x", quality=1 + seed % 10, backing=False)
    result = ExtrudeBackend(Settings()).generate(cutout_from(mask), request, ctx)
    assert_closed_solid(result.mesh)
    unit = 1 / max(mask.shape)
    rows, cols = np.nonzero(mask)
    longest = max(np.ptp(rows), np.ptp(cols)) * unit
    # Parts below the speck size are dropped, so the volume may only fall short by a little.
    expected = mask.sum() * unit**2 * THICKNESS_RATIO * longest
    assert result.mesh.volume == pytest.approx(expected, rel=0.04)


@pytest.mark.parametrize("seed", range(8))
def test_relief_of_random_speckled_blobs_is_closed(seed: int) -> None:
    """A relief cut to a random speckled outline is still one closed, consistently wound solid."""
    mask = _blobs(100 + seed, specks=True)
    ctx, _ = make_ctx()
    cutout = cutout_from(mask, gradient_photo(*mask.shape, seed=seed), method="border")
    result = ReliefBackend(Settings()).generate(cutout, JobRequest(image="x", quality=1 + seed % 6), ctx)
    assert_closed_solid(result.mesh)


@pytest.mark.parametrize("seed", range(4))
def test_extrude_of_random_speckled_blobs_is_closed(seed: int) -> None:
    """Specks are dropped or kept whole; the solid stays closed."""
    mask = _blobs(200 + seed, specks=True)
    ctx, _ = make_ctx()
    result = ExtrudeBackend(Settings()).generate(cutout_from(mask), JobRequest(image="x"), ctx)
    assert_closed_solid(result.mesh)
