"""The `relief` shape: luminance as a closed heightfield solid on a flat base, brighter higher."""

from __future__ import annotations

import numpy as np
import pytest

from orfeas.errors import StageTimeout
from orfeas.request import JobRequest
from orfeas.settings import Settings
from orfeas.shape.relief import BASE_RATIO, DEPTH_RATIO, ReliefBackend
from orfeas.types import Cutout, ShapeResult
from tests.shape_support import (
    assert_closed_solid,
    cutout_from,
    emblem_cutout,
    gradient_photo,
    make_ctx,
    ring_mask,
    vertical_hits,
)


def _relief(cutout: Cutout, quality: int = 5) -> tuple[ShapeResult, list[float], list[str]]:
    ctx, reports = make_ctx()
    result = ReliefBackend(Settings()).generate(cutout, JobRequest(image="x", quality=quality), ctx)
    return result, reports, ctx.warnings


def _full(rgb: np.ndarray) -> Cutout:
    return cutout_from(np.ones(rgb.shape[:2], dtype=bool), rgb, method="border")


def _bands(levels: tuple[int, ...], height: int = 120, band: int = 50) -> np.ndarray:
    """Vertical grey bands, left to right, each `band` px wide."""
    grey = np.repeat(np.array(levels, dtype=np.uint8), band)[None, :].repeat(height, axis=0)
    return np.dstack([grey, grey, grey])


def _top_z_at(mesh, x: float, y: float) -> float:
    """The height of the top surface nearest to (x, y)."""
    v = mesh.vertices
    top = v[v[:, 2] > 0]
    return float(top[np.argmin(np.hypot(top[:, 0] - x, top[:, 1] - y)), 2])


def test_whole_photo_is_a_closed_slab_with_the_pictures_aspect() -> None:
    """A full-frame photo gives a closed solid covering the picture: 1 × 0.75, base to base + depth."""
    result, reports, warnings = _relief(_full(gradient_photo(180, 240)))
    mesh = result.mesh
    assert_closed_solid(mesh)
    assert result.stands is False
    assert result.meta["cut_to_outline"] is False
    assert result.picture_box == pytest.approx((0.0, 0.0, 1.0, 0.75))
    assert mesh.bounds[0] == pytest.approx([0.0, 0.0, 0.0])
    assert mesh.bounds[1] == pytest.approx([1.0, 0.75, BASE_RATIO + DEPTH_RATIO], rel=1e-6)
    top = mesh.vertices[mesh.vertices[:, 2] > 0, 2]
    assert top.min() == pytest.approx(BASE_RATIO)
    assert reports == sorted(reports)
    assert reports[-1] == 1.0
    assert warnings == []


def test_brighter_is_higher() -> None:
    """Grey bands of rising luminance give rising heights; darkest at the base, brightest at the top."""
    levels = (60, 200, 20, 140, 100)
    result, _, _ = _relief(_full(_bands(levels)))
    mesh = result.mesh
    unit = 1 / 250
    heights = [_top_z_at(mesh, (25 + 50 * i) * unit, 60 * unit) for i in range(len(levels))]
    assert np.argsort(heights).tolist() == np.argsort(levels).tolist()
    assert min(heights) == pytest.approx(BASE_RATIO, abs=1e-6)
    assert max(heights) == pytest.approx(BASE_RATIO + DEPTH_RATIO, abs=1e-6)


def test_ramp_heights_follow_luminance() -> None:
    """Across a left-to-right brightness ramp the mean height rises from column to column."""
    result, _, _ = _relief(_full(gradient_photo(180, 240)), quality=4)
    top = result.mesh.vertices[result.mesh.vertices[:, 2] > 0]
    columns, which = np.unique(np.round(top[:, 0], 6), return_inverse=True)
    means = np.bincount(which, weights=top[:, 2]) / np.bincount(which)
    assert len(columns) > 50
    assert np.all(np.diff(means[2:-2]) > 0)


def test_cut_out_subject_follows_the_outline() -> None:
    """A ring-shaped cut-out gives a closed relief with the ring's hole and extents."""
    photo = gradient_photo(200, 300)
    result, _, _ = _relief(cutout_from(ring_mask(200, 300, outer=80, inner=35), photo, method="border"))
    mesh = result.mesh
    assert_closed_solid(mesh)
    assert result.meta["cut_to_outline"] is True
    cx, cy = 150.5 / 300, (200 - 100.5) / 300
    assert vertical_hits(mesh, cx + 0.001, cy + 0.0013) == 0
    assert vertical_hits(mesh, cx + 57 / 300, cy + 0.0013) == 2
    assert mesh.extents[0] == pytest.approx(160 / 300, rel=0.02)
    assert mesh.extents[0] / mesh.extents[1] == pytest.approx(1.0, rel=0.01)
    assert mesh.bounds[0, 2] == pytest.approx(0.0)


def test_emblem_sample() -> None:
    """The bundled emblem as a relief is a closed solid."""
    result, _, _ = _relief(emblem_cutout())
    assert_closed_solid(result.mesh)


def test_quality_raises_the_face_count() -> None:
    """A finer grid at higher quality: the face count rises with quality."""
    cutout = _full(gradient_photo(600, 800))
    faces = [len(_relief(cutout, quality=q)[0].mesh.faces) for q in (1, 4, 7, 10)]
    assert faces == sorted(faces)
    assert len(set(faces)) == 4


def test_flat_picture_gives_a_flat_slab_and_says_so() -> None:
    """A picture without contrast gives a slab of constant height and a warning."""
    rgb = np.full((80, 120, 3), 90, dtype=np.uint8)
    result, _, warnings = _relief(_full(rgb))
    assert_closed_solid(result.mesh)
    top = result.mesh.vertices[result.mesh.vertices[:, 2] > 0, 2]
    assert np.ptp(top) == pytest.approx(0.0)
    assert any("no contrast" in w for w in warnings)


def test_empty_mask_uses_the_whole_picture() -> None:
    """With no foreground found, the relief covers the whole picture and says so."""
    cutout = cutout_from(np.zeros((90, 120), dtype=bool), gradient_photo(90, 120), method="border")
    result, _, warnings = _relief(cutout)
    assert_closed_solid(result.mesh)
    assert result.mesh.extents[:2] == pytest.approx([1.0, 0.75])
    assert any("mask is empty" in w for w in warnings)


def test_expired_deadline_stops_the_stage() -> None:
    """The backend checks the deadline between steps."""
    ctx, _ = make_ctx(seconds=0.0)
    with pytest.raises(StageTimeout):
        ReliefBackend(Settings()).generate(_full(gradient_photo()), JobRequest(image="x"), ctx)


def test_specks_only_mask_uses_the_whole_picture() -> None:
    """A mask of scattered pixels has no outline: the relief covers the picture and says so."""
    mask = np.zeros((120, 160), dtype=bool)
    mask[::30, ::30] = True
    result, _, warnings = _relief(cutout_from(mask, gradient_photo(120, 160), method="border"))
    assert_closed_solid(result.mesh)
    assert result.meta["cut_to_outline"] is False
    assert result.mesh.extents[:2] == pytest.approx([1.0, 0.75])
    assert any("only specks" in w for w in warnings)


def test_a_far_speck_does_not_stretch_the_relief() -> None:
    """A stray foreground pixel in a corner is dropped; base and depth follow the subject's size."""
    clean = ring_mask(200, 300, outer=60, inner=20)
    stray = clean.copy()
    stray[2, 2] = True
    photo = gradient_photo(200, 300)
    a, _, _ = _relief(cutout_from(clean, photo, method="border"))
    b, _, _ = _relief(cutout_from(stray, photo, method="border"))
    assert b.mesh.extents == pytest.approx(a.mesh.extents, rel=0.02)
    assert b.meta["base"] == pytest.approx(a.meta["base"], rel=0.02)


@pytest.mark.parametrize("quality", [5, 7, 9])
def test_outline_on_pixel_borders_leaves_no_needles(quality: int) -> None:
    """A plate with square holes on pixel borders, cut out of a relief, has no needle triangles."""
    y, x = np.mgrid[0:600, 0:600]
    plate = ~(((y % 30) < 20) & ((x % 30) < 20))
    plate[:5] = plate[-5:] = False
    result, _, _ = _relief(cutout_from(plate, gradient_photo(600, 600), method="border"), quality=quality)
    assert_closed_solid(result.mesh)


def test_grid_is_bounded_for_large_pictures() -> None:
    """A 2000 × 1500 photo at the top quality gets a 512-cell grid, not one cell per pixel."""
    rgb = np.repeat(np.linspace(0, 255, 2000, dtype=np.uint8)[None, :, None], 1500, axis=0).repeat(3, axis=2)
    result, _, _ = _relief(_full(rgb), quality=10)
    assert result.meta["grid"] == [384, 512]
    rows, cols = result.meta["grid"]
    # Top grid (2 per cell), walls (2 per perimeter edge), bottom fan (1 per perimeter edge).
    assert len(result.mesh.faces) == 2 * rows * cols + 3 * 2 * (rows + cols)
