"""Marching squares and ring nesting: the outline tracing under both weights-free shapes."""

from __future__ import annotations

import numpy as np
import pytest
from shapely.geometry import Polygon

from orfeas.shape.contours import trace_contours
from orfeas.shape.polygons import cross_section, polygons_from_rings
from orfeas.shape.raster import PictureFrame, coverage_field, grid_shape, quality_resolution
from tests.shape_support import grid, ring_mask


def _area(ring: np.ndarray) -> float:
    return Polygon(ring).area


def test_disc_gives_one_ring_of_the_disc_area() -> None:
    """A smooth disc field traces to one closed ring whose area is the disc's within 1 %."""
    y, x = grid(120, 160)
    field = np.clip(40.5 - np.hypot(y - 60, x - 80), -1, 1) * 0.5 + 0.5
    rings = trace_contours(field)
    assert len(rings) == 1
    assert _area(rings[0]) == pytest.approx(np.pi * 40.5**2, rel=0.005)
    radii = np.hypot(rings[0][:, 0] - 60, rings[0][:, 1] - 80)
    assert radii.min() > 40.3
    assert radii.max() < 40.7


def test_annulus_gives_outer_and_inner_rings() -> None:
    """An annulus traces to two rings, the inner one inside the outer one."""
    rings = trace_contours(ring_mask().astype(float))
    assert len(rings) == 2
    outer, inner = sorted(rings, key=_area, reverse=True)
    assert Polygon(outer).contains(Polygon(inner))


def test_empty_and_full_fields() -> None:
    """No foreground gives no rings; a full field gives one ring around the border."""
    assert trace_contours(np.zeros((10, 12))) == []
    rings = trace_contours(np.ones((10, 12)))
    assert len(rings) == 1
    assert _area(rings[0]) == pytest.approx(12 * 10 - 4 * 0.125)


def test_saddle_follows_the_centre_value() -> None:
    """Two diagonal pixels stay apart when the cell centre is below the level, join when above."""
    apart = np.zeros((4, 4))
    apart[1, 1] = apart[2, 2] = 1.0
    assert len(trace_contours(apart)) == 2
    joined = apart.copy()
    joined[1, 2] = joined[2, 1] = 0.45  # centre = (1 + 1 + 0.45 + 0.45) / 4 > 0.5
    assert len(trace_contours(joined)) == 1


def test_nesting_keeps_holes_and_islands_in_holes() -> None:
    """A square with a hole holding an island nests as a polygon with one hole plus the island."""
    outer = np.array([[0, 0], [10, 0], [10, 10], [0, 10]], float)
    hole = np.array([[2, 2], [8, 2], [8, 8], [2, 8]], float)
    island = np.array([[4, 4], [6, 4], [6, 6], [4, 6]], float)
    shape = polygons_from_rings([island, hole, outer], min_area=0.5, tolerance=0.01)
    assert len(shape.geoms) == 2
    assert shape.area == pytest.approx(100 - 36 + 4)
    big = max(shape.geoms, key=lambda p: p.area)
    assert len(big.interiors) == 1


def test_specks_are_dropped_and_pinholes_filled() -> None:
    """Islands and holes below the minimum area disappear."""
    outer = np.array([[0, 0], [10, 0], [10, 10], [0, 10]], float)
    pinhole = np.array([[5, 5], [5.5, 5], [5.5, 5.5], [5, 5.5]], float)
    speck = np.array([[20, 20], [20.4, 20], [20.4, 20.4]], float)
    shape = polygons_from_rings([outer, pinhole, speck], min_area=1.0, tolerance=0.01)
    assert len(shape.geoms) == 1
    assert shape.area == pytest.approx(100)
    assert not shape.geoms[0].interiors


def test_cross_section_keeps_the_hole() -> None:
    """The polygons become a manifold3d cross-section with the same area."""
    outer = np.array([[0, 0], [10, 0], [10, 10], [0, 10]], float)
    hole = np.array([[2, 2], [8, 2], [8, 8], [2, 8]], float)
    shape = polygons_from_rings([hole, outer], min_area=0.5, tolerance=0.01)
    assert cross_section(shape).area() == pytest.approx(64)


def test_picture_frame_and_grid_helpers() -> None:
    """The frame's longest side is 1 with +Y up; grids keep the aspect; quality spans lo..hi."""
    frame = PictureFrame(width_px=400, height_px=200)
    assert frame.box == (0.0, 0.0, 1.0, 0.5)
    x, y = frame.to_xy(np.array([0.0, 200.0]), np.array([0.0, 400.0]))
    assert list(x) == [0.0, 1.0]
    assert list(y) == [0.5, 0.0]
    assert grid_shape(200, 400, 100) == (50, 100)
    assert quality_resolution(1, 64, 512) == 64
    assert quality_resolution(10, 64, 512) == 512
    steps = [quality_resolution(q, 64, 512) for q in range(1, 11)]
    assert steps == sorted(steps)
    field = coverage_field(ring_mask(), (50, 75))
    assert field.shape == (50, 75)
    assert 0.0 <= field.min() < field.max() <= 1.0
