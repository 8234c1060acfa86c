"""Placement: picture frame → build frame, exact uniform scale, on the build plate."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from orfeas.mesh.placement import place, to_build_frame
from orfeas.request import Dimensions


def _vertices(extents=(30.0, 50.0, 4.0), offset=(7.0, -3.0, 11.0)) -> np.ndarray:
    box = trimesh.creation.box(extents=extents)
    return np.array(box.vertices) + offset


def _extents(v: np.ndarray) -> np.ndarray:
    return v.max(axis=0) - v.min(axis=0)


@pytest.mark.parametrize(
    ("dimensions", "axis", "size"),
    [
        ({"width_mm": 80.0}, 0, 80.0),
        ({"depth_mm": 123.456}, 1, 123.456),
        ({"height_mm": 7.5}, 2, 7.5),
    ],
)
def test_the_asked_dimension_is_exact(dimensions, axis, size):
    """The asked axis has exactly the asked length (1e-9 relative) and the scale is uniform."""
    vertices = _vertices()
    placed = place(vertices, stands=False, dimensions=Dimensions(**dimensions), default_size_mm=100)
    extents = _extents(placed)
    assert extents[axis] == pytest.approx(size, rel=1e-9)
    np.testing.assert_allclose(extents / extents[axis], _extents(vertices) / _extents(vertices)[axis])


def test_without_dimensions_the_longest_side_gets_the_default_size():
    """No asked size: the longest side becomes default_size_mm."""
    placed = place(_vertices(), stands=False, dimensions=None, default_size_mm=100.0)
    np.testing.assert_allclose(_extents(placed), [60.0, 100.0, 8.0], rtol=1e-12)


def test_the_part_rests_on_the_plate_centred():
    """The lowest point is at z = 0 exactly and the bounding box is centred on x = y = 0."""
    vertices = np.random.default_rng(0).normal(5.0, 3.0, (500, 3))
    placed = place(vertices, stands=False, dimensions=None, default_size_mm=90.0)
    assert placed[:, 2].min() == 0.0
    lo, hi = placed.min(axis=0), placed.max(axis=0)
    assert abs(lo[0] + hi[0]) < 1e-9
    assert abs(lo[1] + hi[1]) < 1e-9


def test_a_standing_object_is_turned_upright_facing_front():
    """stands=True: picture up (+Y) becomes build up (+Z), and the side facing the viewer (+Z) faces -Y."""
    tall = _vertices(extents=(10.0, 40.0, 20.0), offset=(0, 0, 0))
    placed = place(tall, stands=True, dimensions=None, default_size_mm=40.0)
    np.testing.assert_allclose(_extents(placed), [10.0, 20.0, 40.0])
    frame = to_build_frame(np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]), stands=True)
    np.testing.assert_allclose(frame, [[0, 0, 1], [0, -1, 0], [1, 0, 0]], atol=1e-15)


def test_a_lying_piece_keeps_its_axes():
    """stands=False: picture Z is already the build Z."""
    flat = _vertices(extents=(10.0, 40.0, 2.0))
    placed = place(flat, stands=False, dimensions=None, default_size_mm=40.0)
    np.testing.assert_allclose(_extents(placed), [10.0, 40.0, 2.0])


def test_standing_keeps_the_winding_outward():
    """The quarter turn is a rotation, so a closed mesh keeps a positive volume."""
    box = trimesh.creation.box(extents=(1, 2, 3))
    placed = place(np.array(box.vertices), stands=True, dimensions=None, default_size_mm=30.0)
    assert trimesh.Trimesh(placed, box.faces, process=False).volume > 0


def test_a_flat_axis_cannot_be_scaled():
    """Asking a height for a mesh with no height is a ValueError naming the axis."""
    flat = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    with pytest.raises(ValueError, match="along z"):
        place(flat, stands=False, dimensions=Dimensions(height_mm=10.0), default_size_mm=100)
